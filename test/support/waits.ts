// Waits that end on the condition a test means, never on a guess of how long something
// takes. Their deadlines only bound a hang, so a test that cannot get what it waits for
// fails and says what it waited for; they sit far above anything a busy machine needs
// (two cores shared with cluster tests stall for seconds), and a passing test never
// comes near them.

/** How long a wait may take before it fails the test. */
export const WAIT_MS = 30_000;

/** How often until() looks again: often enough to add no noticeable time. */
const POLL_MS = 5;

/** Rejects if `promise` has not settled within waitMs: a hung test fails and says why. */
export async function within<T>(promise: Promise<T>, what: string, waitMs = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting for ${what} after ${waitMs} ms`)), waitMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves once `condition()` holds, looking every few milliseconds; rejects after waitMs.
 * `what` may be a function, to report the state the wait ended in.
 */
export async function until(condition: () => boolean, what: string | (() => string), waitMs = WAIT_MS): Promise<void> {
  const deadlineMs = performance.now() + waitMs;
  while (!condition()) {
    if (performance.now() > deadlineMs) {
      throw new Error(`gave up waiting for ${typeof what === 'string' ? what : what()} after ${waitMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Resolves once `probe()` resolves true, asking again after each answer (plus a short pause);
 * rejects after waitMs. For conditions that take a request to observe (a cluster's status).
 */
export async function untilAsync(probe: () => Promise<boolean>, what: string | (() => string), waitMs = WAIT_MS, pauseMs = 50): Promise<void> {
  const deadlineMs = performance.now() + waitMs;
  while (!(await probe())) {
    if (performance.now() > deadlineMs) {
      throw new Error(`gave up waiting for ${typeof what === 'string' ? what : what()} after ${waitMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
