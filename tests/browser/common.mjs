// What the browser scripts share: Chromium's launch flags, how inputs are read, and waiting for
// the log entry an action adds.

/** Flags for a quiet, headless Chromium that makes no network calls of its own. */
export const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * The value of `--name=value`, else of the environment variable `envName`, else `fallback`; exits 2
 * naming the input when none is given. `script` names the caller in that message.
 */
export function option(script, name, envName, fallback) {
  const prefix = `--${name}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(prefix));
  const value = arg !== undefined ? arg.slice(prefix.length) : process.env[envName] ?? fallback;
  if (value === undefined || value === "") {
    process.stderr.write(`${script}: missing --${name}=… (or ${envName})\n`);
    process.exit(2);
  }
  return value;
}

/**
 * Runs `action` and waits for the first entry matching `entries` that it added (ones already there
 * do not count); returns that entry's locator.
 */
export async function entryAddedBy(entries, action) {
  const before = await entries.count();
  await action();
  const added = entries.nth(before);
  await added.waitFor({ state: "attached" });
  return added;
}
