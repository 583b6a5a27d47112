/**
 * The sluice gateway (src/index.ts, unchanged) with its bucket object's storage calls counted, so
 * the benchmark can check how many SQLite rows a decision writes instead of only deriving it.
 * `ClientBuckets` is subclassed and its `this.ctx` replaced by one whose `storage` counts every
 * method it is asked for (put, delete, setAlarm, deleteAll, …), then calls the real one (the
 * constructor's own loading, before the swap, is not counted: once per object load). The counts are
 * module state: on workerd the objects of a service run in its isolate, so the gateway answers
 * them at `/__bench/storage-ops` (a bench-only route, before the gateway sees the request), and the
 * objects constructed at `/__bench/objects`.
 */
import gateway, { ClientBuckets as Buckets } from "../../src/index";

export { GatewayMetrics, LimiterService } from "../../src/index";

const calls: Record<string, number> = {};
/** Bucket objects constructed in this process (one per client key loaded: the scale scenario's objects per client). */
let constructed = 0;

/** `target` with every method call counted under its name and made on the real object. */
function counted<T extends object>(target: T, onCall: (name: string) => void): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        onCall(String(property));
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
  });
}

export class ClientBuckets extends Buckets {
  constructor(ctx: DurableObjectState, env: object) {
    // The runtime's base class takes only the real state; the constructor's own loading (list,
    // getAlarm) uses it uncounted, and everything after goes through `this.ctx`, replaced here.
    super(ctx, env);
    constructed += 1;
    const storage = counted(ctx.storage, (name) => (calls[name] = (calls[name] ?? 0) + 1));
    const state = new Proxy(ctx, {
      get(object, property) {
        if (property === "storage") return storage;
        const value: unknown = Reflect.get(object, property, object);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(object) : value;
      },
    });
    Object.defineProperty(this, "ctx", { value: state, configurable: true });
  }
}

export default {
  fetch(request: Request, env: Parameters<typeof gateway.fetch>[1], ctx: ExecutionContext): Response | Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path === "/__bench/storage-ops") return Response.json(calls);
    if (path === "/__bench/objects") return Response.json({ constructed });
    return gateway.fetch(request, env, ctx);
  },
};
