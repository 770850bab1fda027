/** Logging through `debug`: one namespace per module, each line carrying the request's fields. */
import createDebug from 'debug';

/** Debug namespaces are `express-oci-registry:<module>`; enable them with `DEBUG=express-oci-registry:*`. */
export const LOG_NAMESPACE = 'express-oci-registry';

/** A log function whose lines carry fixed fields (repository, upload id, …). */
export type Log = (format: string, ...args: unknown[]) => void;

/** A logger factory for one module: call it with the request's fields to get a {@link Log}. */
export function moduleLogger(module: string): (fields: Record<string, string | undefined>) => Log {
  const debug = createDebug(`${LOG_NAMESPACE}:${module}`);
  return (fields) => {
    const prefix = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([name, value]) => `${name}=${value}`)
      .join(' ');
    return (format, ...args) => {
      if (debug.enabled) debug(`${prefix} ${format}`, ...args);
    };
  };
}
