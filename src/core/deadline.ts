/** The backend did not answer within its budget. */
export class BackendTimeoutError extends Error {
  override readonly name = "BackendTimeoutError";
}

/**
 * Runs one backend call under a deadline: the signal aborts the call at `timeoutMs`, and the
 * returned promise rejects with {@link BackendTimeoutError} at the same moment.
 *
 * @example
 * const decisions = await withDeadline((signal) => backend.take([charge], signal), 1000);
 */
export async function withDeadline<T>(call: (signal: AbortSignal) => Promise<T>, timeoutMs: number): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new BackendTimeoutError(`no answer within ${timeoutMs} ms`);
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    return await Promise.race([call(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
