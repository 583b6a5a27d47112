import { Hono, type Context } from "hono";
import { BackendConfigError } from "../core/backend";
import { checkClient, deleteOverride, listOverrides, peekClient, putOverride, resetClient, StoreUnavailableError, type ControlError } from "./control";
import type { Limiter } from "../core/limiter";
import { invalidConfigurationProblem, invalidRequestProblem, limiterUnavailableProblem, notFoundProblem, unauthorizedProblem } from "../core/problems";
import { bearerMatches } from "./bearer";
import type { Env } from "./env";
import type { ReadyGateway } from "./gateway";
import { logEvent } from "./log";

type AdminEnv = { Bindings: Env; Variables: { gateway: ReadyGateway } };

/**
 * The admin API under `/__limiter/admin/`: peek, reset, check, and overrides (PUT, GET,
 * DELETE), JSON in and out. Off (404, as if it did not exist) unless `LIMITER_ADMIN_TOKEN` is
 * set; then every request needs `Authorization: Bearer <token>` (401 otherwise). Never proxied,
 * never charged to a client, never logged with its token. The routes only translate HTTP: the
 * operations are the core's control functions, which the service binding calls too.
 *
 * @example
 * limiterRoutes.route("/admin", adminRoutes);
 */
export const adminRoutes = new Hono<AdminEnv>();

adminRoutes.use("*", async (c, next) => {
  const { admin } = c.var.gateway.config;
  if (admin.kind === "off") return notFoundProblem(new URL(c.req.url).pathname);
  if (!(await bearerMatches(c.req.raw.headers, admin.token))) return unauthorizedProblem("The admin API");
  return next();
});

adminRoutes.post("/peek", (c) => answer(c, (limiter, body) => peekClient(limiter, body)));
adminRoutes.post("/reset", (c) => answer(c, (limiter, body) => resetClient(limiter, body)));
adminRoutes.post("/check", (c) => answer(c, (limiter, body) => checkClient(limiter, body)));
adminRoutes.put("/overrides", (c) => answer(c, (limiter, body) => putOverride(limiter, body)));
adminRoutes.delete("/overrides", (c) => answer(c, (limiter, body) => deleteOverride(limiter, body)));
adminRoutes.get("/overrides", (c) => answer(c, (limiter) => listOverrides(limiter), { body: false }));

/** Runs one control operation on the request's JSON body and answers it: 200 JSON, 400 naming the field, 503 when the store fails. */
async function answer(c: Context<AdminEnv>, operation: (limiter: Limiter, body: unknown) => Promise<{ ok: true } | ControlError>, { body: readsBody = true } = {}): Promise<Response> {
  const { limiter } = c.var.gateway;
  let body: unknown;
  if (readsBody) {
    try {
      body = await c.req.json();
    } catch {
      return invalidRequestProblem("(body)", "must be JSON (Content-Type: application/json)");
    }
  }
  try {
    const result = await operation(limiter, body);
    if (!result.ok) return invalidRequestProblem(result.field, result.message);
    const { ok: _ok, ...rest } = result;
    return c.json(rest);
  } catch (error) {
    if (error instanceof BackendConfigError) return invalidConfigurationProblem([`${error.variable}: ${error.message}`]);
    // Anything else than the store failing is a bug: the reserved routes' error handler answers it (500, logged).
    if (!(error instanceof StoreUnavailableError)) throw error;
    logEvent({ event: "admin.failure", path: new URL(c.req.url).pathname, reason: error.message });
    return limiterUnavailableProblem(limiter.backend.name, "the admin operation was not done");
  }
}
