import type { GpuSample } from "../protocol/interfaces.js";

/** One reading of all of an agent's GPUs. */
export interface GpuReading {
  at: number;
  gpus: GpuSample[];
}

export interface GpuTelemetryOptions {
  /** Readings kept per agent; older ones are dropped. (Default: 120) */
  capacity?: number;
}

/**
 * Recent GPU utilisation and memory per agent, for the dashboard's small time series. Kept in
 * memory only (a bounded ring buffer per agent): it is a view of now, not a record.
 */
export class GpuTelemetry {
  private readonly capacity: number;
  private readonly rings = new Map<string, { readings: GpuReading[]; next: number }>();

  constructor(options: GpuTelemetryOptions = {}) {
    this.capacity = Math.max(1, options.capacity ?? 120);
  }

  /** Adds a reading; the oldest is overwritten once the agent has `capacity` of them. */
  record(agentId: string, at: number, gpus: GpuSample[]): void {
    let ring = this.rings.get(agentId);
    if (!ring) {
      ring = { readings: [], next: 0 };
      this.rings.set(agentId, ring);
    }
    const reading = { at, gpus: gpus.map((gpu) => ({ ...gpu })) };
    if (ring.readings.length < this.capacity) ring.readings.push(reading);
    else ring.readings[ring.next] = reading;
    ring.next = (ring.next + 1) % this.capacity;
  }

  /** The agent's readings, oldest first; [] for an agent never heard from. */
  series(agentId: string): GpuReading[] {
    const ring = this.rings.get(agentId);
    if (!ring) return [];
    if (ring.readings.length < this.capacity) return [...ring.readings];
    return [...ring.readings.slice(ring.next), ...ring.readings.slice(0, ring.next)];
  }

  /** Agents with readings. */
  agents(): string[] {
    return [...this.rings.keys()];
  }

  /** Forgets an agent's readings. */
  forget(agentId: string): void {
    this.rings.delete(agentId);
  }
}
