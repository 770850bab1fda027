/** `/v2/`: tells clients this is a registry speaking the distribution API. */
import type { MethodSpec, MethodTable } from '../context';
import { sendJson } from '../respond';

const check: MethodSpec = { actions: [], handle: async ({ res }) => sendJson(res, 200, {}) };

/** The methods of `/v2/`. */
export const baseMethods: MethodTable = { GET: check, HEAD: check };
