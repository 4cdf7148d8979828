import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/**
 * The SHA-256 (lowercase hex) of a file, read as a stream: an artifact may be larger than memory.
 * One implementation for the agent (collecting), the coordinator (checking an upload) and verify.
 */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    const stream = createReadStream(path);
    stream.on("data", (chunk) => hash.update(chunk));
    stream.on("error", reject);
    stream.on("end", () => resolve(hash.digest("hex")));
  });
}
