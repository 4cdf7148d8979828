/** Exit codes: 0 all good, 1 tasks failed or a runtime error, 2 bad input, 130 interrupted. */
export const EXIT = { ok: 0, failed: 1, badInput: 2, interrupted: 130 } as const;
