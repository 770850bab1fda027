/**
 * The registry behind HTTP Basic auth, with users from a file: one `name:salt:hash` line per user,
 * the hash being scrypt(password, salt) from node:crypto, in hex. Everyone signed in may pull every
 * repository; a user may push to and delete from only the repositories under their own name
 * (`alice/…`).
 *
 *   node dist/examples/basic-auth.js hash alice 'a password' >> users.txt   # add a user
 *   USERS_FILE=users.txt PORT=5000 DATA_DIR=registry-data node dist/examples/basic-auth.js
 *   docker login 127.0.0.1:5000 -u alice
 */
import express from 'express';
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { resolve } from 'node:path';
import { basicAuthorize, basicChallenge, basicCredentials, createRegistryRouter, FileSystemStorage, type AccessRequest, type Authorize } from '../lib';

const KEY_LENGTH = 32;

/** A users-file line for `name` and `password`, with a fresh random salt. */
export function userLine(name: string, password: string): string {
  const salt = randomBytes(16).toString('hex');
  return `${name}:${salt}:${scryptSync(password, salt, KEY_LENGTH).toString('hex')}`;
}

/** Parses a users file: `name:salt:hash` lines; blank lines and `#` comments are skipped. */
export function parseUsers(text: string): Map<string, { salt: string; hash: Buffer }> {
  const users = new Map<string, { salt: string; hash: Buffer }>();
  for (const line of text.split('\n').map((each) => each.trim())) {
    if (!line || line.startsWith('#')) continue;
    const [name, salt, hash] = line.split(':');
    if (!name || !salt || !hash) throw new Error(`malformed users-file line for ${name || '(no name)'}`);
    users.set(name, { salt, hash: Buffer.from(hash, 'hex') });
  }
  return users;
}

/** Whether `password` is `name`'s in `users`. */
export function checkPassword(users: Map<string, { salt: string; hash: Buffer }>, name: string, password: string): boolean {
  const user = users.get(name);
  if (!user) return false;
  const actual = scryptSync(password, user.salt, KEY_LENGTH);
  return actual.length === user.hash.length && timingSafeEqual(actual, user.hash);
}

/** The user name a Basic `Authorization` header proves, or undefined. */
export function basicUser(req: IncomingMessage, users: Map<string, { salt: string; hash: Buffer }>): string | undefined {
  const credentials = basicCredentials(req);
  return credentials && checkPassword(users, credentials.user, credentials.password) ? credentials.user : undefined;
}

/** Whether `user` may do what `access` asks: pull anything, push and delete under `<user>/`. */
export function mayAccess(user: string, access: AccessRequest): boolean {
  if (access.actions.every((action) => action === 'pull')) return true;
  return access.repository.startsWith(`${user}/`);
}

/** The `authorize` option for a users file. */
export function usersAuthorize(users: Map<string, { salt: string; hash: Buffer }>): Authorize {
  return basicAuthorize({
    verify: (name, password) => checkPassword(users, name, password),
    allow: (user, access) => (mayAccess(user, access) ? true : 'forbidden'),
  });
}

/** The example app: the registry with Basic auth over `root`. */
export function createBasicAuthApp(root: string, usersText: string): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(createRegistryRouter({ storage: new FileSystemStorage({ root }), authorize: usersAuthorize(parseUsers(usersText)), challenge: basicChallenge('example registry') }));
  return app;
}

if (require.main === module) {
  const [command, name, password] = process.argv.slice(2);
  if (command === 'hash') {
    if (!name || !password || name.includes(':')) throw new Error('usage: basic-auth.js hash <name> <password>');
    console.log(userLine(name, password));
  } else {
    const usersFile = resolve(process.env.USERS_FILE ?? 'users.txt');
    const root = resolve(process.env.DATA_DIR ?? 'registry-data');
    const port = Number(process.env.PORT ?? 5000);
    const server = createBasicAuthApp(root, readFileSync(usersFile, 'utf8')).listen(port, process.env.HOST ?? '127.0.0.1', () => {
      console.log(`registry with Basic auth listening on port ${(server.address() as { port: number }).port} (users from ${usersFile})`);
    });
  }
}
