import { API_PREFIX } from "../api/contract.js";
import { UsageError } from "./exitCodes.js";

export interface ServerFlags {
  server?: string;
  token?: string;
}

export interface Server {
  url: string;
  token: string | undefined;
}

/** --server (or $LABSWEEP_SERVER) and --token (or $LABSWEEP_TOKEN, then $LABSWEEP_VIEWER_TOKEN). */
export function serverFrom(flags: ServerFlags): Server | null {
  const url = flags.server ?? process.env.LABSWEEP_SERVER;
  if (!url) return null;
  return {
    url: url.split(",")[0]?.replace(/\/+$/, "") ?? url,
    token: flags.token ?? process.env.LABSWEEP_TOKEN ?? process.env.LABSWEEP_VIEWER_TOKEN,
  };
}

/** One request to the coordinator; errors become one clear line (exit 2 for a wrong token). */
export async function callApi(
  server: Server,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ json: unknown; text: string; headers: Headers }> {
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
  const text = await response.text();
  if (response.status === 401)
    throw new UsageError(
      `the coordinator at ${server.url} rejected the token (pass --token or set LABSWEEP_TOKEN)`,
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
  return { json: isJson ? JSON.parse(text) : null, text, headers: response.headers };
}
