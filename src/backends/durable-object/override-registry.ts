import type { OverrideRecord } from "../../core/backend";

const REGISTRY_PREFIX = "registry:";

/**
 * The list of every override (exact and prefix), for the admin API and the isolates' prefix
 * caches: kept by one object (named `__limiter_registry`), written through to its storage. A
 * role of its own inside `ClientBuckets`, so the class needs no migration of its own.
 *
 * @example
 * const registry = new OverrideRegistryRecords(ctx.storage);
 * await registry.load();
 * registry.put({ id: 'api {"header:x-api-key":"ent_*"}', rule: "api", client: { "header:x-api-key": "ent_*" }, capacity: 1000, rate: "1000/1m" });
 */
export class OverrideRegistryRecords {
  private readonly records = new Map<string, OverrideRecord>();

  constructor(private readonly storage: DurableObjectStorage) {}

  /** Reads the stored records (once, when the object starts). */
  async load(): Promise<void> {
    for (const [key, value] of await this.storage.list<OverrideRecord>({ prefix: REGISTRY_PREFIX })) this.records.set(key.slice(REGISTRY_PREFIX.length), value);
  }

  get size(): number {
    return this.records.size;
  }

  list(): OverrideRecord[] {
    return [...this.records.values()];
  }

  put(record: OverrideRecord): void {
    this.records.set(record.id, record);
    void this.storage.put(REGISTRY_PREFIX + record.id, record);
  }

  /** Whether there was such a record. */
  remove(id: string): boolean {
    void this.storage.delete(REGISTRY_PREFIX + id);
    return this.records.delete(id);
  }
}
