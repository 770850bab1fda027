/** htpasswd files as an `authorize`: bcrypt entries, as `htpasswd -B` writes them and the reference registry reads them. */
import type * as Bcrypt from 'bcryptjs';
import type { Authorize } from '../access';
import { basicAuthorize } from '../basic-auth';

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** The users of an htpasswd file, name to bcrypt hash; blank lines and `#` comments are skipped, any other hash is refused. */
export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon <= 0) throw new Error(`htpasswd line ${index + 1} is not name:hash`);
    if (!BCRYPT.test(hash)) throw new Error(`htpasswd line ${index + 1} (${name}) is not a bcrypt hash; create it with htpasswd -B`);
    users.set(name, hash);
  });
  return users;
}

/**
 * An `authorize` that admits the users of an htpasswd file to everything and asks everyone else
 * to sign in. It needs the `bcryptjs` package (an optional peer dependency).
 */
export function htpasswdAuthorize(text: string): Authorize {
  const users = parseHtpasswd(text);
  const bcrypt = loadBcrypt();
  return basicAuthorize({
    verify: async (user, password) => {
      const hash = users.get(user);
      return hash !== undefined && bcrypt.compare(password, hash);
    },
  });
}

function loadBcrypt(): typeof Bcrypt {
  try {
    return require('bcryptjs') as typeof Bcrypt;
  } catch {
    throw new Error('htpasswd sign-in needs the bcryptjs package: npm install bcryptjs');
  }
}
