// Shared by the course's Node.js scripts: settings from the environment, one JSON result line, clear errors.

/** A setting from the environment, or a clear error naming it. */
export function setting(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set: pass it in the environment (e.g. ${name}=...)`);
  }
  return value;
}

/** The first error in a chain of causes that carries a system error code (ECONNREFUSED, ENOTFOUND ...). */
function systemError(error) {
  for (let e = error, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e.code) return e;
    if (e.errors?.length) return systemError(e.errors[0]); // AggregateError: one per address tried
  }
  return null;
}

/** What a failed call means, in one line: a server that is down, an HTTP error with its status, or the message. */
export function explain(error) {
  const system = systemError(error);
  if (system?.code === "ECONNREFUSED") {
    return `cannot reach the server: ${system.address}:${system.port} refused the connection. Is it running?`;
  }
  if (system) return `${system.code}: ${system.message}`;
  const status = error?.status_code ?? error?.status;
  return status ? `HTTP ${status}: ${error.error ?? error.message}` : String(error?.message ?? error);
}

/** Run an async main(); print its result as the last line (JSON); on failure print the reason and exit 1. */
export async function main(fn) {
  try {
    const result = await fn();
    console.log(JSON.stringify(result));
  } catch (error) {
    console.error(`error: ${explain(error)}`);
    process.exit(1);
  }
}
