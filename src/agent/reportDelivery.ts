import type { Warn } from "../log/logger.js";
import type { FinishRequest, FinishResponse } from "../protocol/http.js";
import { uploadArtifacts } from "./artifactUpload.js";
import { refusedAsFailure } from "./attemptOutcome.js";
import type { Contact } from "./contact.js";
import { type CoordinatorClient, HttpError } from "./httpClient.js";
import { logPieces } from "./logStream.js";
import type { OutboxRecord } from "./outbox.js";

/** The final log goes in pieces of at most this many bytes (the coordinator caps request bodies). */
const FINAL_LOG_PIECE_BYTES = 128 * 1024;

/**
 * Sends one outbox record: the log's unsent end, then the report. Network errors and 5xx are
 * retried until `signal` aborts; a 2xx (accepted, or already recorded) is "sent".
 */
export async function deliverReport(
  client: CoordinatorClient,
  contact: Contact,
  record: OutboxRecord,
  signal: AbortSignal,
  /** Where the record's artifacts wait, and where a refusal of one is told. */
  artifacts?: { dir: string; warn: Warn },
): Promise<"sent" | { refused: string }> {
  const path = `/attempts/${record.attemptId}`;
  // The log's end first; it is a courtesy, the report matters.
  await sendFinalLog(client, contact, record, signal);
  // Then the artifacts: a success the coordinator records has its files stored.
  let request = declaring(
    record.artifacts?.length && artifacts !== undefined
      ? await uploadArtifacts(client, contact, record, artifacts, signal)
      : record.request,
    record,
  );
  for (;;) {
    try {
      await contact.guard(() => client.call<FinishResponse>("POST", `${path}/finish`, request, { signal }));
      return "sent";
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      if (error.status === 413 && request.logTail) {
        // Too large: a shorter tail, then none.
        const tail = request.logTail;
        request = { ...request, logTail: tail.length > 4096 ? tail.slice(-4096) : undefined };
        continue;
      }
      const failed = refusedAsFailure(request, error);
      if (failed) {
        request = failed;
        continue;
      }
      return { refused: `${error.status}: ${error.detail}` };
    }
  }
}

/**
 * A success names the artifacts it uploaded: the coordinator records it only if each is still
 * stored as this attempt's own (another attempt's upload may have superseded them since).
 */
function declaring(request: FinishRequest, record: OutboxRecord): FinishRequest {
  const files = record.artifacts ?? [];
  if (request.outcome.kind !== "succeeded" || files.length === 0) return request;
  return { ...request, artifacts: files.map(({ path, sha256 }) => ({ path, sha256 })) };
}

/** The unsent end of an attempt's log, in pieces a request may carry; stops at a refusal. */
export async function sendFinalLog(
  client: CoordinatorClient,
  contact: Contact,
  record: OutboxRecord,
  signal: AbortSignal,
): Promise<void> {
  const path = `/attempts/${record.attemptId}/log`;
  for (const piece of record.log ? logPieces(record.log, FINAL_LOG_PIECE_BYTES) : []) {
    const chunk = { agentId: record.request.agentId, ...piece };
    try {
      await contact.guard(() => client.call("POST", path, chunk, { signal }));
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      return;
    }
  }
}
