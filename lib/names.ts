/** Repository names and tags: the spec's grammars, and their validation. */
import { RegistryError } from './errors';

// The spec's repository name grammar: path components separated by "/".
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_PATTERN = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Longest repository name accepted, as in the reference registry. */
export const MAX_NAME_LENGTH = 255;

/** Whether `name` is a valid repository name. */
export function isName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_PATTERN.test(name);
}

/** Throws `NAME_INVALID` unless `name` is a valid repository name. */
export function validateName(name: string): string {
  if (!isName(name)) throw new RegistryError('NAME_INVALID', `invalid repository name: ${name.slice(0, 80)}`);
  return name;
}

/** Throws `TAG_INVALID` unless `tag` is a valid tag. */
export function validateTag(tag: string): string {
  if (!TAG_PATTERN.test(tag)) throw new RegistryError('TAG_INVALID', `invalid tag: ${tag.slice(0, 80)}`);
  return tag;
}
