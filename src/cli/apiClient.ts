import { readTokenFile, TokenError } from "../http/tokens.js";
import { API_PREFIX } from "../protocol/http.js";
import { UsageError } from "./exitCodes.js";

export interface ServerFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
}

/** What a command does on the coordinator: read (any token), or change the sweep (the admin token). */
export type Power = "read" | "admin";

export interface Server {
  url: string;
  token: string | undefined;
  power: Power;
}

/**
 * Where each power looks for its token, after --token and --token-file: reads try the least
 * powerful first.
 */
const TOKEN_ENV: Record<Power, string[]> = {
  read: ["LABSWEEP_VIEWER_TOKEN", "LABSWEEP_TOKEN", "LABSWEEP_ADMIN_TOKEN"],
  admin: ["LABSWEEP_ADMIN_TOKEN", "LABSWEEP_TOKEN"],
};

/** --server (or $LABSWEEP_SERVER) and the token: --token, else --token-file, else the environment. */
export function serverFrom(flags: ServerFlags, power: Power = "read"): Server | null {
  const url = flags.server ?? process.env.LABSWEEP_SERVER;
  if (!url) return null;
  return {
    url: url.split(",")[0]?.replace(/\/+$/, "") ?? url,
    token: tokenFrom(flags, TOKEN_ENV[power]),
    power,
  };
}

/** --token, else --token-file (its first line), else the first of `envNames` that is set. */
export function tokenFrom(
  flags: { token?: string; tokenFile?: string },
  envNames: string[],
): string | undefined {
  if (flags.token) return flags.token;
  if (flags.tokenFile) {
    try {
      return readTokenFile(flags.tokenFile);
    } catch (error) {
      if (error instanceof TokenError) throw new UsageError(error.message);
      throw error;
    }
  }
  for (const name of envNames) if (process.env[name]) return process.env[name];
  return undefined;
}

/** One request to the coordinator; errors become one clear line (exit 2 for a wrong token). */
export async function callApi(
  server: Server,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ json: unknown; text: string; bytes: Buffer; headers: Headers }> {
  let response: Response;
  try {
    response = await fetch(`${server.url}${API_PREFIX}${path}`, {
      method,
      headers: {
        ...(server.token ? { authorization: `Bearer ${server.token}` } : {}),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new Error(`cannot reach the coordinator at ${server.url}`, { cause: error });
  }
  const bytes = Buffer.from(await response.arrayBuffer());
  const text = bytes.toString("utf8");
  if (response.status === 401)
    throw new UsageError(
      server.power === "admin"
        ? `the coordinator at ${server.url} rejected the token: this needs the admin token (\`labsweep token --admin\` on the coordinator's machine; pass --token-file FILE or set LABSWEEP_ADMIN_TOKEN)`
        : `the coordinator at ${server.url} rejected the token (pass --token-file FILE or set LABSWEEP_VIEWER_TOKEN)`,
    );
  if (!response.ok) {
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON: show the text as it is
    }
    throw new UsageError(`the coordinator answered ${response.status}: ${message}`);
  }
  const isJson = response.headers.get("content-type")?.includes("json");
  return { json: isJson ? JSON.parse(text) : null, text, bytes, headers: response.headers };
}
