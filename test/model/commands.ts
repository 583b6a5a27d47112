import { createHash } from "node:crypto";
import fc from "fast-check";
import { Envelope, type Answer, type Violation } from "./envelope";
import { ADMIN_TOKEN, isWindow, localShare, OVERRIDABLE, ROUTES, RULES, WINDOW_OVERRIDES, type BucketRuleName, type ModelPolicy, type RouteName } from "./rules";
import { QUEUED_OVERRIDABLE, QUEUED_ROUTE_NAMES } from "./rules";
import type { ModelStack } from "./stack";

/** Client names; the run's tag is put in front. `vip-*` is the prefix overrides' pattern; `std-c` the client whose bucket may be broken. */
export const CLIENTS = ["vip-a", "vip-b", "std-c"] as const;
const POISONABLE = 2;

/** What one model run knows: its tag (fresh keys), the envelope, and the state commands depend on. */
export class RunModel {
  frozen = false;
  poisoned = false;
  step = 0;
  nextId = 0;
  /** Responses still streaming (slow requests not disconnected), ended when the run ends. */
  readonly open: AbortController[] = [];
  /** Violations are thrown at once unless surveying (MODEL_SURVEY=1: collect, print, go on). */
  constructor(
    readonly tag: string,
    readonly envelope: Envelope,
    readonly survey: boolean,
    readonly log: string[],
  ) {}

  client(index: number): string {
    return `${this.tag}-${CLIENTS[index]}`;
  }

  /** The prefix every `vip-*` pattern of this run names. */
  get vipPrefix(): string {
    return `${this.tag}-vip-`;
  }

  /** Checks every promise; throws the violations (with the run's log) unless surveying. */
  verify(extra: Violation[] = []): void {
    const found = [...this.envelope.verify(), ...extra];
    if (extra.length > 0) for (const v of extra) this.envelope.record(v);
    if (found.length === 0 || this.survey) return;
    throw new Error(`model violated after step ${this.step}:\n${found.map((v) => `  [${v.kind}] ${v.message}`).join("\n")}\nrun log:\n${this.log.slice(-40).join("\n")}`);
  }
}

type Cmd = fc.AsyncCommand<RunModel, ModelStack, boolean>;

const now = () => performance.now();

/** One request to a gateway isolate, recorded as the model sees it. */
async function send(model: RunModel, stack: ModelStack, client: string, isolate: number, route: RouteName, asked?: number, signal?: AbortSignal): Promise<Answer> {
  const url = `${stack.urls[isolate]}${ROUTES[route].path}/x${asked === undefined ? "" : `/s/${asked}`}`;
  const id = model.nextId++;
  // The origin notes when the request reaches it under this id (a queued request counts then).
  const modelId = `${model.tag}-${id}`;
  const started = now();
  let response: Response;
  try {
    response = await fetch(url, { headers: { "x-api-key": client, "x-model-id": modelId }, ...(signal && { signal }) });
  } catch (error) {
    if (signal?.aborted !== true) throw error;
    // The client left before any answer came.
    const left: Answer = { id, step: model.step, client, route, isolate, send: started, recv: now(), status: 0, headers: {}, body: "", modelId, left: now() };
    model.envelope.answers.push(left);
    return left;
  }
  // A client that leaves once the answer's headers are in reads no body: the request was answered.
  const body = await response.text().catch(() => "");
  const answer: Answer = {
    modelId,
    id,
    step: model.step,
    client,
    route,
    isolate,
    send: started,
    recv: now(),
    status: response.status,
    headers: Object.fromEntries([...response.headers].map(([k, v]) => [k.toLowerCase(), v])),
    body,
    ...(asked !== undefined && { asked }),
  };
  model.envelope.answers.push(answer);
  return answer;
}

function short(answer: Answer): string {
  if (answer.left !== undefined) return `#${answer.id}:left @${Math.round(answer.send)}-${Math.round(answer.left)}`;
  const h = answer.headers;
  const extra = answer.status === 429 ? ` RA=${h["retry-after"]}` : h.ratelimit ? ` ${h.ratelimit}` : h["x-model-origin"] ? " no-headers" : "";
  return `#${answer.id}:${answer.status}${h["x-sluice-degraded"] ? "(local)" : ""}${extra} @${Math.round(answer.send)}-${Math.round(answer.recv)}`;
}

/** `n` concurrent requests of one client through one isolate on one route. */
class RequestCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly isolate: number,
    readonly route: RouteName,
    readonly n: number,
    readonly asked: number | undefined,
  ) {}
  check = () => true;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const isolate = this.isolate % stack.urls.length;
    const answers = await Promise.all(Array.from({ length: this.n }, () => send(model, stack, model.client(this.client), isolate, this.route, this.asked)));
    model.log.push(`${model.step} ${this.toString()} → ${answers.map(short).join(" ")}`);
    model.verify();
  }
  toString() {
    return `request(${CLIENTS[this.client]}, isolate ${this.isolate}, /${this.route}${this.asked === undefined ? "" : ` status ${this.asked}`}, ×${this.n})`;
  }
}

/**
 * The window rules' adversarial schedule: waits until `leadMs` before the next whole second of the
 * wall clock (a 1 s fixed window's edge, on the store's clock too), then sends `n` concurrent
 * requests of one client spread over the isolates, and as soon as they are answered `n` more
 * (after the edge): L at the end of one window and L at the start of the next. On the fixed
 * window the origin answers 401, a status its `count` keeps (no refund loosens the bound).
 */
class EdgeBurstCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly route: "fixed" | "slide",
    readonly n: number,
    readonly leadMs: number,
  ) {}
  check = () => true;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const wait = (1000 - (Date.now() % 1000) - this.leadMs + 1000) % 1000;
    await new Promise((resolve) => setTimeout(resolve, wait));
    const burst = () =>
      Promise.all(Array.from({ length: this.n }, (_, i) => send(model, stack, model.client(this.client), i % stack.urls.length, this.route, this.route === "fixed" ? 401 : undefined)));
    const answers = [...(await burst()), ...(await burst())];
    model.log.push(`${model.step} ${this.toString()} → ${answers.map(short).join(" ")}`);
    model.verify();
  }
  toString() {
    return `edgeBurst(${CLIENTS[this.client]}, /${this.route}, ${this.n} ${this.leadMs} ms before a second, ${this.n} after)`;
  }
}

class SleepCommand implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(model: RunModel) {
    model.step++;
    await new Promise((resolve) => setTimeout(resolve, this.ms));
    model.log.push(`${model.step} ${this.toString()}`);
  }
  toString() {
    return `sleep(${this.ms})`;
  }
}

/** A slow request to the concurrency rule's route; with `disconnect`, the client goes away once the headers arrived. */
class SlowCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly isolate: number,
    readonly ms: number,
    readonly disconnect: boolean,
  ) {}
  check = () => true;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const client = model.client(this.client);
    const isolate = this.isolate % stack.urls.length;
    const controller = new AbortController();
    const started = now();
    const response = await fetch(`${stack.urls[isolate]}/work/x/work?ms=${this.ms}`, { headers: { "x-api-key": client }, signal: controller.signal });
    const admitted = response.headers.get("x-model-origin") === "1";
    const body = admitted ? "" : await response.text();
    const answer: Answer = {
      id: model.nextId++,
      step: model.step,
      client,
      route: "work",
      isolate,
      send: started,
      recv: now(),
      status: response.status,
      headers: Object.fromEntries([...response.headers].map(([k, v]) => [k.toLowerCase(), v])),
      body,
    };
    model.envelope.answers.push(answer);
    if (admitted && this.disconnect) controller.abort();
    else if (admitted) {
      model.open.push(controller);
      void response.text().catch(() => {});
    }
    model.log.push(`${model.step} ${this.toString()} → ${short(answer)}`);
    model.verify(concurrencyViolations(model, stack));
  }
  toString() {
    return `slow(${CLIENTS[this.client]}, isolate ${this.isolate}, ${this.ms} ms${this.disconnect ? ", then disconnect" : ""})`;
  }
}

/** The origin's own books: never more of a client's requests in flight there than the concurrency limit. */
function concurrencyViolations(model: RunModel, stack: ModelStack): Violation[] {
  const out: Violation[] = [];
  for (let i = 0; i < CLIENTS.length; i++) {
    const books = stack.origin.inFlight.get(model.client(i));
    if (books !== undefined && books.peak > RULES.inflight.limit) {
      out.push({ kind: "concurrency", message: `${model.client(i)}: ${books.peak} requests in flight at the origin at once, limit ${RULES.inflight.limit}` });
      books.peak = RULES.inflight.limit; // report each excess once
    }
  }
  return out;
}

async function admin(stack: ModelStack, isolate: number, method: string, path: string, body: unknown) {
  const response = await fetch(`${stack.urls[isolate % stack.urls.length]}/__limiter/admin/${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined };
}

/** An admin request that failed: a 503 while the store may be down is expected; anything else breaks the promise of the admin API. */
function adminFailure(model: RunModel, status: number, send: number, recv: number, what: string): Violation[] {
  if (status === 200 || (status === 503 && model.envelope.storeMayBeDown({ send, recv }))) return [];
  return [{ kind: "admin-failed", message: `${what} answered ${status}${status === 503 ? " while the store answered" : ""}` }];
}

/** Admin operations need a store that answers: not while frozen, nor on a broken bucket. */
const adminAllowed = (model: RunModel, rule: BucketRuleName, client: number | undefined) =>
  !model.frozen && !(model.poisoned && (rule === "plain" || rule === "shadow") && (client === undefined || client === POISONABLE));

class ResetCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly rule: BucketRuleName,
    readonly isolate: number,
  ) {}
  check = (model: Readonly<RunModel>) => adminAllowed(model as RunModel, this.rule, this.client);
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const client = model.client(this.client);
    const send = now();
    const { status } = await admin(stack, this.isolate, "POST", "reset", { rule: this.rule, client: { "header:x-api-key": client } });
    const recv = now();
    model.log.push(`${model.step} ${this.toString()} → ${status} @${Math.round(send)}-${Math.round(recv)}`);
    model.envelope.resets.push({ rule: this.rule, client, send, recv, ...(status !== 200 && { uncertain: true }) });
    model.verify(adminFailure(model, status, send, recv, `reset ${this.rule}/${client}`));
  }
  toString() {
    return `reset(${CLIENTS[this.client]}, ${this.rule}, isolate ${this.isolate})`;
  }
}

/** Sets (policy) or removes (null) an exact override, or a prefix override on `vip-*` (client undefined). */
class OverrideCommand implements Cmd {
  constructor(
    readonly client: number | undefined,
    readonly rule: BucketRuleName,
    readonly policy: ModelPolicy | null,
    readonly isolate: number,
  ) {}
  check = (model: Readonly<RunModel>) => adminAllowed(model as RunModel, this.rule, this.client);
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const value = this.client === undefined ? `${model.vipPrefix}*` : model.client(this.client);
    const target = { rule: this.rule, client: { "header:x-api-key": value } };
    const send = now();
    const { status } =
      this.policy === null
        ? await admin(stack, this.isolate, "DELETE", "overrides", target)
        : await admin(stack, this.isolate, "PUT", "overrides", { ...target, capacity: this.policy.capacity, rate: this.policy.rate });
    const recv = now();
    model.log.push(`${model.step} ${this.toString()} → ${status} @${Math.round(send)}-${Math.round(recv)}`);
    model.envelope.changes.push({
      kind: this.client === undefined ? "prefix" : "exact",
      rule: this.rule,
      subject: this.client === undefined ? model.vipPrefix : value,
      policy: this.policy,
      send,
      recv,
      ...(status !== 200 && { uncertain: true }),
    });
    model.verify(adminFailure(model, status, send, recv, this.toString()));
  }
  toString() {
    const who = this.client === undefined ? "vip-*" : CLIENTS[this.client];
    return this.policy === null
      ? `removeOverride(${who}, ${this.rule}, isolate ${this.isolate})`
      : `override(${who}, ${this.rule}, capacity ${this.policy.capacity}, rate ${this.policy.rate}/s, isolate ${this.isolate})`;
  }
}

/** Admin peek: what it says is left never exceeds the envelope, and its capacity is one in force. */
class PeekCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly rule: BucketRuleName,
    readonly isolate: number,
  ) {}
  check = (model: Readonly<RunModel>) => adminAllowed(model as RunModel, this.rule, this.client);
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const client = model.client(this.client);
    const send = now();
    const { status, json } = await admin(stack, this.isolate, "POST", "peek", { rule: this.rule, client: { "header:x-api-key": client } });
    const recv = now();
    const bucket = (json?.buckets as { remaining: number; capacity: number }[] | undefined)?.[0];
    model.log.push(`${model.step} ${this.toString()} → ${status} ${JSON.stringify(bucket)}`);
    const found: Violation[] = [];
    if (status !== 200 || bucket === undefined) found.push(...adminFailure(model, status, send, recv, `peek ${this.rule}/${client}`));
    else if (RULES[this.rule].mode === "enforce") {
      const rule = RULES[this.rule];
      const left = isWindow(rule) ? model.envelope.windowRemaining(rule, client, send, recv, 0) : model.envelope.bucketLeft(rule, client, recv, (a) => a.recv <= send);
      if (bucket.remaining > left + 1e-9)
        found.push({ kind: "remaining-too-high", message: `peek ${this.rule}/${client}: remaining ${bucket.remaining}, the envelope allows at most ${left.toFixed(2)}` });
      const capacities = new Set(model.envelope.policies(rule, client, send, recv).map((p) => p.capacity));
      // While the store may be down, a peek may be answered from the isolate's local share.
      if (model.envelope.storeMayBeDown({ send, recv }))
        for (const p of model.envelope.allPolicies(rule, client)) capacities.add(localShare(p, stack.settings.localFraction, rule.cost, rule.algorithm).capacity);
      if (!capacities.has(bucket.capacity)) found.push({ kind: "headers", message: `peek ${this.rule}/${client}: capacity ${bucket.capacity}, in force [${[...capacities]}]` });
    }
    model.verify(found);
  }
  toString() {
    return `peek(${CLIENTS[this.client]}, ${this.rule}, isolate ${this.isolate})`;
  }
}

/** Upstash: the store stops answering (the bridge accepts requests and never answers) or answers again. */
class FreezeCommand implements Cmd {
  constructor(readonly frozen: boolean) {}
  check = (model: Readonly<RunModel>) => model.frozen !== this.frozen;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    stack.freeze?.(this.frozen);
    model.frozen = this.frozen;
    if (this.frozen) model.envelope.freezes.push({ from: now(), to: undefined });
    else {
      const last = model.envelope.freezes.at(-1);
      if (last !== undefined) last.to = now();
    }
    model.log.push(`${model.step} ${this.toString()} @${Math.round(now())}`);
  }
  toString() {
    return this.frozen ? "freezeStore()" : "thawStore()";
  }
}

/**
 * Upstash: one client's bucket key holds a hash, so every store call for it fails (one failing
 * object), and that client keeps calling through one isolate while a healthy client calls too:
 * the healthy one must still be decided by the store.
 */
class PoisonCommand implements Cmd {
  constructor(readonly isolate: number) {}
  check = (model: Readonly<RunModel>) => !model.poisoned && !model.frozen;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const isolate = this.isolate % stack.urls.length;
    await stack.poison?.("plain", model.client(POISONABLE));
    model.poisoned = true;
    for (const rule of ["plain", "shadow"] as const) model.envelope.poisoned.push({ rule, client: model.client(POISONABLE), at: now() });
    const broken = Array.from({ length: 6 }, () => send(model, stack, model.client(POISONABLE), isolate, "plain"));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const healthy = Array.from({ length: 2 }, () => send(model, stack, model.client(0), isolate, "plain"));
    const answers = await Promise.all([...broken, ...healthy]);
    model.log.push(`${model.step} ${this.toString()} → ${answers.map(short).join(" ")}`);
    model.verify();
  }
  toString() {
    return `poisonBucket(${CLIENTS[POISONABLE]}, plain, then it and ${CLIENTS[0]} call isolate ${this.isolate})`;
  }
}

/** An override's policy as a user writes it for the rule: for a window rule, the capacity per second (`capacity: L2, rate: L2`: L2 per 1 s window). */
function policyFor(rule: BucketRuleName, policy: ModelPolicy | null): ModelPolicy | null {
  return policy !== null && isWindow(RULES[rule]) ? { capacity: policy.capacity, rate: policy.capacity } : policy;
}

// ---- Queued rules (issue 18, "Queue instead of refuse") ----

/**
 * `n` concurrent requests of one client on a queued route, through one isolate; after `leaveMs`
 * the client leaves every request not answered yet (queued, most likely): each is recorded with
 * the time it left, and counted if it reaches the origin all the same.
 */
class QueueLeaveCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly isolate: number,
    readonly route: (typeof QUEUED_ROUTE_NAMES)[number],
    readonly n: number,
    readonly leaveMs: number,
  ) {}
  check = () => true;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const isolate = this.isolate % stack.urls.length;
    const leaving = new AbortController();
    const timer = setTimeout(() => leaving.abort(), this.leaveMs);
    const answers = await Promise.all(Array.from({ length: this.n }, () => send(model, stack, model.client(this.client), isolate, this.route, undefined, leaving.signal)));
    clearTimeout(timer);
    model.log.push(`${model.step} ${this.toString()} → ${answers.map(short).join(" ")}`);
    model.verify();
  }
  toString() {
    return `queueThenLeave(${CLIENTS[this.client]}, isolate ${this.isolate}, /${this.route}, ×${this.n}, leave after ${this.leaveMs} ms)`;
  }
}

/**
 * The queue's adversarial schedule: `rounds` bursts of `n` concurrent requests of one client,
 * `gapMs` apart whatever has been answered, through the isolates in turn: each burst comes while
 * the ones before still wait, so the queue is long and the promise (counted at the origin's
 * arrivals) is as tight as it gets.
 */
class QueueTrainCommand implements Cmd {
  constructor(
    readonly client: number,
    readonly route: (typeof QUEUED_ROUTE_NAMES)[number],
    readonly n: number,
    readonly gapMs: number,
    readonly rounds: number,
  ) {}
  check = () => true;
  async run(model: RunModel, stack: ModelStack) {
    model.step++;
    const pending: Promise<Answer>[] = [];
    for (let round = 0; round < this.rounds; round++) {
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, this.gapMs));
      for (let i = 0; i < this.n; i++) pending.push(send(model, stack, model.client(this.client), (round + i) % stack.urls.length, this.route));
    }
    const answers = await Promise.all(pending);
    model.log.push(`${model.step} ${this.toString()} → ${answers.map(short).join(" ")}`);
    model.verify();
  }
  toString() {
    return `queueTrain(${CLIENTS[this.client]}, /${this.route}, ${this.rounds} bursts of ${this.n}, ${this.gapMs} ms apart)`;
  }
}

/** Requests, overrides, resets, peeks and clients leaving on the queued rules' routes. */
function queuedCommands(client: fc.Arbitrary<number>, isolate: fc.Arbitrary<number>): fc.Arbitrary<Cmd>[] {
  const route = fc.constantFrom(...QUEUED_ROUTE_NAMES);
  const rule = fc.constantFrom(...QUEUED_OVERRIDABLE);
  const policy = fc.record({ capacity: fc.constantFrom(1, 2, 5), rate: fc.constantFrom(2, 5, 10) });
  const request = fc.record({ client, isolate, route, n: fc.integer({ min: 1, max: 6 }) }).map(({ client, isolate, route, n }) => new RequestCommand(client, isolate, route, n, undefined));
  // Gaps that keep each route's queue long: the window's L at once, then L more as soon as they may queue (W − maxWait later), and again; a bucket's debt renewed every token or two.
  const train = fc.record({ client, route, n: fc.integer({ min: 2, max: 4 }), pick: fc.nat() }).map(({ client, route, n, pick }) => {
    const gaps = { qs: [420, 480], qb: [100, 200, 300], qpair: [200, 300] }[route];
    return new QueueTrainCommand(client, route, route === "qs" ? Math.max(n, 3) : n, gaps[pick % gaps.length] ?? 200, 3);
  });
  return [
    request,
    request,
    train,
    train,
    fc
      .record({ client, isolate, route, n: fc.integer({ min: 2, max: 6 }), leaveMs: fc.constantFrom(40, 150, 300) })
      .map(({ client, isolate, route, n, leaveMs }) => new QueueLeaveCommand(client, isolate, route, n, leaveMs)),
    fc
      .record({ client: fc.option(client, { freq: 3 }), rule, policy: fc.option(policy, { freq: 3 }), isolate })
      .map(({ client, rule, policy, isolate }) => new OverrideCommand(client ?? undefined, rule, policyFor(rule, policy), isolate)),
    fc.record({ client, rule, isolate }).map(({ client, rule, isolate }) => new ResetCommand(client, rule, isolate)),
    fc.record({ client, rule: fc.constantFrom(...QUEUED_OVERRIDABLE, "qshadow" as const), isolate }).map(({ client, rule, isolate }) => new PeekCommand(client, rule, isolate)),
  ];
}

/** The command generators for a stack: what it can do (freezing and poisoning need Upstash). */
export function commandsFor(stack: ModelStack): fc.Arbitrary<Cmd>[] {
  const isolates = stack.urls.length;
  const client = fc.integer({ min: 0, max: CLIENTS.length - 1 });
  const isolate = fc.integer({ min: 0, max: isolates - 1 });
  // Weighted towards the rules whose features interact most (blockFor, count).
  const rule = fc.constantFrom<BucketRuleName>(...OVERRIDABLE, "blocky", "counted");
  const overridden = WINDOW_OVERRIDES ? rule : fc.constantFrom<BucketRuleName>(...OVERRIDABLE.filter((r) => !isWindow(RULES[r])), "blocky", "counted");
  const policy = fc.record({ capacity: fc.constantFrom(2, 3, 6, 40), rate: fc.constantFrom(1, 5, 20) });
  const bucketRoutes: RouteName[] = ["plain", "plain", "heavy", "block", "block", "block", "count", "count", "count", "local", "fixed", "fixed", "slide", "slide", "bulk", "bulk", "bulk"];
  const request = fc
    .record({ client, isolate, route: fc.constantFrom(...bucketRoutes), n: fc.integer({ min: 1, max: 5 }), asked: fc.constantFrom(200, 401, 403, 500) })
    .map(({ client, isolate, route, n, asked }) => new RequestCommand(client, isolate, route, n, ROUTES[route].rules.some((r) => RULES[r].count !== undefined) ? asked : undefined));
  const commands: fc.Arbitrary<Cmd>[] = [
    request,
    request,
    request,
    request,
    fc.constantFrom(20, 60, 150, 400, 900).map((ms) => new SleepCommand(ms)),
    fc.constantFrom(20, 60, 150, 400, 900).map((ms) => new SleepCommand(ms)),
    fc
      .record({ client, route: fc.constantFrom("fixed" as const, "slide" as const), n: fc.integer({ min: 2, max: 5 }), leadMs: fc.constantFrom(15, 60) })
      .map(({ client, route, n, leadMs }) => new EdgeBurstCommand(client, route, n, leadMs)),
    fc.record({ client, isolate, ms: fc.constantFrom(300, 800, 1500), disconnect: fc.boolean() }).map(({ client, isolate, ms, disconnect }) => new SlowCommand(client, isolate, ms, disconnect)),
    fc.record({ client, rule, isolate }).map(({ client, rule, isolate }) => new ResetCommand(client, rule, isolate)),
    fc
      .record({ client, rule: overridden, policy: fc.option(policy, { freq: 3 }), isolate })
      .map(({ client, rule, policy, isolate }) => new OverrideCommand(client, rule, policyFor(rule, policy), isolate)),
    fc.record({ rule: overridden, policy: fc.option(policy, { freq: 3 }), isolate }).map(({ rule, policy, isolate }) => new OverrideCommand(undefined, rule, policyFor(rule, policy), isolate)),
    fc.record({ client, rule: fc.constantFrom(...OVERRIDABLE, "shadow" as const), isolate }).map(({ client, rule, isolate }) => new PeekCommand(client, rule, isolate)),
  ];
  if (stack.freeze !== undefined) commands.push(fc.boolean().map((frozen) => new FreezeCommand(frozen)));
  if (stack.poison !== undefined) commands.push(isolate.map((i) => new PoisonCommand(i)));
  commands.push(...queuedCommands(client, isolate));
  return commands;
}

/** After a run: every Redis key expires, except the override registry and keys holding an exact override (configuration). */
export async function expiryViolations(stack: ModelStack, model: RunModel): Promise<Violation[]> {
  if (stack.redisKeys === undefined) return [];
  // Only this run's keys (named by the SHA-256 of its clients' values), so a reproduction is this run's.
  const hashes = CLIENTS.map((_, i) => createHash("sha256").update(model.client(i)).digest("hex"));
  const out: Violation[] = [];
  for (const { key, pttl, type, value } of await stack.redisKeys()) {
    if (!hashes.some((hash) => key.endsWith(hash))) continue;
    if (key.endsWith(":__overrides")) continue;
    if (type === "string" && value?.includes("|")) continue;
    if (pttl === -1) out.push({ kind: "no-expiry", message: `Redis key ${key} (${type}${value === undefined ? "" : ` "${value}"`}) has no expiry` });
  }
  return out;
}

export { Envelope };
