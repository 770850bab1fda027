/** Immutable tags: which tags may never move once set, and the refusal of a push or delete that would move one. */
import { RegistryError } from '../errors';
import type { StoreHooks } from '../store/shared';
import { statelessPattern } from './patterns';

/**
 * The `immutableTags` option: tags matching the expression (tested against the tag alone), or
 * for which the function answers true, can be set once and then neither moved to another
 * manifest nor deleted.
 *
 * @example
 * ```ts
 * immutableTags: /^v\d+\.\d+\.\d+$/
 * immutableTags: (repository, tag) => repository.startsWith('release/') && tag !== 'latest'
 * ```
 */
export type ImmutableTagsOption = RegExp | ((repository: string, tag: string) => boolean);

/** The predicate an {@link ImmutableTagsOption} stands for. */
export function immutableTagPredicate(option: ImmutableTagsOption): (repository: string, tag: string) => boolean {
  if (typeof option === 'function') return option;
  const pattern = statelessPattern(option);
  return (_repository, tag) => pattern.test(tag);
}

/**
 * The store hooks of immutable tags. A tag that names a manifest may go on naming it (pushing the
 * same manifest again succeeds) and nothing else; a new one is created with a conditional write,
 * so of two pushes racing to set it, across processes, only one succeeds.
 */
export function immutableTagHooks(isImmutable: (repository: string, tag: string) => boolean): StoreHooks {
  return {
    isWriteOnce: isImmutable,
    checkTag: (repository, tag, current, next) => {
      if (current === undefined || current === next || !isImmutable(repository, tag)) return;
      const message =
        next === undefined
          ? `tag ${tag} in ${repository} is immutable and cannot be deleted`
          : `tag ${tag} in ${repository} is immutable: it names ${current} and cannot be moved to ${next}`;
      throw new RegistryError('DENIED', { reason: 'immutable tag', repository, tag, digest: current }, { message });
    },
  };
}
