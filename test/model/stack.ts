import { createHash } from "node:crypto";
import { createClient } from "redis";
import { startLocalStack, upstashVars } from "../../dev/local-stack.mjs";
import { startGateway } from "../../dev/miniflare-gateway.mjs";
import { startGatewayIsolates } from "../../dev/miniflare-isolates.mjs";
import { startModelOrigin, type ModelOrigin } from "./origin";
import { ADMIN_TOKEN, MODEL_RULES } from "./rules";

export type BackendName = "durable-object" | "upstash" | "memory";

/** The real stack one model run drives: gateways in front of the model origin, and the store's controls. */
export interface ModelStack {
  readonly backend: BackendName;
  /** One base URL per gateway isolate. */
  readonly urls: readonly string[];
  readonly origin: ModelOrigin;
  /** The settings the gateways run with (what the model needs to know of them). */
  readonly settings: StackSettings;
  /** Upstash only: the store stops answering (requests to the bridge hang), and answers again. */
  readonly freeze?: (frozen: boolean) => void;
  /** Upstash only: makes one client's bucket key unusable (a hash where a string belongs): its calls fail. */
  readonly poison?: (rule: string, apiKey: string) => Promise<void>;
  /** Upstash only: every key in Redis with its PTTL (-1: no expiry) and, for strings, its value. */
  readonly redisKeys?: () => Promise<{ key: string; pttl: number; type: string; value: string | undefined }[]>;
  dispose(): Promise<void>;
}

export interface StackSettings {
  readonly vars: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly breakerCooldownMs: number;
  readonly localFraction: number;
  readonly denyCache: boolean;
}

/** Gateway vars besides the backend's: the model's rules, an admin token, and the given settings. */
function gatewayVars(originUrl: string, extra: Readonly<Record<string, string>>): Record<string, string> {
  return {
    ORIGIN_URL: originUrl,
    LIMITER_RULES: JSON.stringify(MODEL_RULES),
    LIMITER_ADMIN_TOKEN: ADMIN_TOKEN,
    LIMITER_METRICS: "off",
    ...extra,
  };
}

function settingsOf(vars: Readonly<Record<string, string>>): StackSettings {
  return {
    vars,
    timeoutMs: Number(vars.LIMITER_TIMEOUT_MS ?? "1000"),
    breakerCooldownMs: Number(vars.LIMITER_BREAKER_COOLDOWN_MS ?? "5000"),
    localFraction: Number(vars.LIMITER_LOCAL_FRACTION ?? "0.1"),
    denyCache: (vars.LIMITER_DENY_CACHE_SIZE ?? "10000") !== "0",
  };
}

/**
 * Starts the real stack for one backend, all on loopback: Durable Objects = `isolates` gateway
 * isolates in one Miniflare sharing the namespace; Upstash = `isolates` gateway processes on one
 * redis-server through the REST bridge; memory = one gateway (its state is one isolate's).
 *
 * @example
 * const stack = await startModelStack("upstash", bundle, {}, 2);
 * await fetch(`${stack.urls[0]}/plain/x`, { headers: { "x-api-key": "a" } });
 * await stack.dispose();
 */
export async function startModelStack(backend: BackendName, scriptPath: string, extra: Readonly<Record<string, string>>, isolates: number): Promise<ModelStack> {
  const origin = await startModelOrigin();
  if (backend === "durable-object") {
    const vars = gatewayVars(origin.url, extra);
    const started = await startGatewayIsolates({ scriptPath, vars, count: isolates });
    return {
      backend,
      urls: started.urls,
      origin,
      settings: settingsOf(vars),
      dispose: async () => {
        await started.dispose();
        await origin.close();
      },
    };
  }
  if (backend === "memory") {
    const vars = gatewayVars(origin.url, { LIMITER_BACKEND: "memory", ...extra });
    const gateway = await startGateway({ scriptPath, vars });
    return {
      backend,
      urls: [gateway.url],
      origin,
      settings: settingsOf(vars),
      dispose: async () => {
        await gateway.dispose();
        await origin.close();
      },
    };
  }
  const local = await startLocalStack();
  const vars = gatewayVars(origin.url, { ...upstashVars(local), ORIGIN_URL: origin.url, ...extra });
  const gateways = await Promise.all(Array.from({ length: isolates }, () => startGateway({ scriptPath, vars })));
  const redis = createClient({ url: local.redis.url });
  await redis.connect();
  const prefix = vars.LIMITER_KEY_PREFIX ?? "sluice";
  return {
    backend,
    urls: gateways.map((gateway) => gateway.url),
    origin,
    settings: settingsOf(vars),
    freeze: (frozen) => local.bridge.setHang(frozen),
    poison: async (rule, apiKey) => {
      // The bucket's key as the Upstash backend names it: prefix, rule, key kind, SHA-256 of the value.
      const key = `${prefix}:${rule}:header.x-api-key:${createHash("sha256").update(apiKey).digest("hex")}`;
      await redis.del(key);
      await redis.hSet(key, "poison", "1");
      await redis.pExpire(key, 60_000);
    },
    redisKeys: async () => {
      const out: { key: string; pttl: number; type: string; value: string | undefined }[] = [];
      for await (const keys of redis.scanIterator({ COUNT: 500 })) {
        for (const key of keys) {
          const type = await redis.type(key);
          const value = type === "string" ? ((await redis.get(key)) ?? undefined) : undefined;
          out.push({ key, pttl: await redis.pTTL(key), type, value });
        }
      }
      return out;
    },
    dispose: async () => {
      local.bridge.setHang(false);
      redis.destroy();
      await Promise.all(gateways.map((gateway) => gateway.dispose()));
      await local.stop();
      await origin.close();
    },
  };
}
