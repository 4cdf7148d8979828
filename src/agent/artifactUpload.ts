import { createReadStream } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Warn } from "../log/logger.js";
import type { ArtifactFile } from "../protocol/artifacts.js";
import { API_PREFIX, type ErrorBody, type ErrorCode, type FinishRequest } from "../protocol/http.js";
import type { Contact } from "./contact.js";
import { type CoordinatorClient, HttpError, sleep, UnauthorizedError } from "./httpClient.js";
import type { OutboxRecord } from "./outbox.js";

/** A checksum mismatch (the file changed on the way) is sent again from the start this often. */
const MISMATCH_TRIES = 3;
/** How long an upload waits before asking again after a 409 (the coordinator is still writing). */
const BUSY_WAIT_MS = 250;

/** What the coordinator said of an artifact. */
type Upload = "stored" | "unwanted" | { refused: string };

/**
 * Uploads a report's artifacts from `dir` (the outbox's copy) before the report is sent, each
 * streamed from the offset the coordinator says it holds: an upload cut by an outage resumes
 * there, and the coordinator checks size and SHA-256 before it stores a file. Returns the report
 * to send — a success whose artifacts the coordinator refused (over its limit, a bad path) turned
 * into a failure saying why. Network errors and 5xx are retried until `signal` aborts.
 */
export async function uploadArtifacts(
  client: CoordinatorClient,
  contact: Contact,
  record: OutboxRecord,
  { dir, warn }: { dir: string; warn: Warn },
  signal: AbortSignal,
): Promise<FinishRequest> {
  const request = record.request;
  const files = record.artifacts ?? [];
  const pathOf = (file: ArtifactFile) =>
    `/agents/${encodeURIComponent(request.agentId)}/attempts/${record.attemptId}/artifacts/${encodePath(file.path)}`;
  // Every file is asked about before any is sent: one the coordinator would refuse (over its
  // limit) fails the attempt before a file of it is stored.
  for (const file of files) {
    const held = await heldOf(client, contact, pathOf(file), file, signal);
    if ("size" in held) continue;
    return held.upload === "unwanted" ? request : refusedAsFailed(record, file, held.upload, warn);
  }
  for (const file of files) {
    const upload = await uploadOne(
      client,
      contact,
      pathOf(file),
      file,
      join(dir, ...file.path.split("/")),
      signal,
    );
    // Another attempt's success holds the task: its report will be ignored as stale, as it is.
    if (upload === "unwanted") return request;
    if (upload !== "stored") return refusedAsFailed(record, file, upload, warn);
  }
  return request;
}

/** A success turned into a failure that names the artifact the coordinator refused, and why. */
function refusedAsFailed(
  record: OutboxRecord,
  file: ArtifactFile,
  upload: { refused: string },
  warn: Warn,
): FinishRequest {
  const request = record.request;
  if (request.outcome.kind !== "succeeded") return request;
  const error = `the coordinator refused its artifact ${JSON.stringify(file.path)} (${upload.refused})`;
  // The agent said "succeeded" when the process ended: say what the coordinator will record.
  warn(`attempt ${record.attemptId} is reported failed: ${error}`);
  const { wallSeconds } = request.outcome;
  return { ...request, outcome: { kind: "failed", exitCode: 0, signal: null, error, wallSeconds } };
}

/**
 * What the coordinator holds of a file — retried with backoff and failover while it is away: the
 * resume point — or its verdict on it.
 */
async function heldOf(
  client: CoordinatorClient,
  contact: Contact,
  path: string,
  file: ArtifactFile,
  signal: AbortSignal,
): Promise<{ size: number; stored: boolean } | { upload: Exclude<Upload, "stored"> }> {
  try {
    const query = `?size=${file.size}&sha256=${file.sha256}`;
    return await contact.guard(() => client.call("GET", `${path}${query}`, undefined, { signal }));
  } catch (error) {
    if (error instanceof HttpError) return { upload: verdictOf(error) };
    throw error;
  }
}

async function uploadOne(
  client: CoordinatorClient,
  contact: Contact,
  path: string,
  file: ArtifactFile,
  local: string,
  signal: AbortSignal,
): Promise<Upload> {
  let mismatches = 0;
  for (;;) {
    const held = await heldOf(client, contact, path, file, signal);
    if (!("size" in held)) return held.upload;
    if (held.stored) return "stored";
    try {
      if ((await put(client, path, file, local, held.size, signal)).stored) return "stored";
    } catch (error) {
      if (error instanceof UnauthorizedError || signal.aborted) throw error;
      // Cut off (or a 5xx): after a moment, ask what arrived and go on from there.
      if (!(error instanceof HttpError)) await sleep(BUSY_WAIT_MS, signal);
      else if (error.code === "upload_offset") await sleep(BUSY_WAIT_MS, signal);
      else if (error.status !== 422 || ++mismatches >= MISMATCH_TRIES) return verdictOf(error);
    }
  }
}

/** One PUT of the file from `offset`, its bytes streamed from disk (never whole in memory). */
async function put(
  client: CoordinatorClient,
  path: string,
  file: ArtifactFile,
  local: string,
  offset: number,
  signal: AbortSignal,
): Promise<{ size: number; stored: boolean }> {
  const server = client.server;
  const query = `?offset=${offset}&size=${file.size}&sha256=${file.sha256}`;
  const response = await fetch(`${server}${API_PREFIX}${path}${query}`, {
    method: "PUT",
    headers: { authorization: client.authorization, "content-type": "application/octet-stream" },
    body: Readable.toWeb(createReadStream(local, { start: offset })) as ReadableStream<Uint8Array>,
    duplex: "half",
    signal,
  } as RequestInit);
  const text = await response.text();
  if (response.status === 401) throw new UnauthorizedError(server, text);
  if (!response.ok) {
    const detail = errorOf(text);
    if (response.status >= 500) throw new Error(`PUT ${path}: ${response.status} ${detail}`);
    throw new HttpError(response.status, server, `PUT ${path}`, detail, codeOf(text));
  }
  return JSON.parse(text) as { size: number; stored: boolean };
}

function verdictOf(error: HttpError): Exclude<Upload, "stored"> {
  return error.status === 410 ? "unwanted" : { refused: `${error.status}: ${error.detail}` };
}

function codeOf(text: string): ErrorCode | undefined {
  try {
    return (JSON.parse(text) as ErrorBody).code;
  } catch {
    return undefined;
  }
}

function errorOf(text: string): string {
  try {
    return String((JSON.parse(text) as { error?: unknown }).error ?? text);
  } catch {
    return text.slice(0, 200);
  }
}

/** Each segment percent-encoded: a name with `?`, `#`, `%` or spaces reaches the coordinator as it is. */
function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}
