// Series arithmetic for the dashboard's curves. Pure: no DOM, so it is tested in Node too.

/**
 * A task's series split by attempt, for the task page: per attempt present, its values at the
 * steps (null elsewhere), and where each later attempt took over (its first step).
 */
export function splitByAttempt(series) {
  const { steps, values, attempts } = series;
  const numbers = [...new Set(attempts)].sort((a, b) => a - b);
  const lines = numbers.map((attempt) => ({
    attempt,
    values: steps.map((_, index) => (attempts[index] === attempt ? values[index] : null)),
  }));
  const takeovers = [];
  for (const attempt of numbers.slice(1)) {
    const index = attempts.indexOf(attempt);
    takeovers.push({ attempt, step: steps[index] });
  }
  return { steps: [...steps], lines, takeovers };
}
