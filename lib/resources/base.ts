import { sendJson, type ResourceDispatcher } from '../context';

/** `/v2/`: tells clients this is a registry speaking the distribution API. */
export const baseDispatcher: ResourceDispatcher = ({ res }) => {
  const check = async () => sendJson(res, 200, {});
  return { GET: check, HEAD: check };
};
