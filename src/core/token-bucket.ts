/**
 * The token bucket and the multi-bucket operations, where their importers have always found
 * them: the bucket's math lives in `./algorithms/token-bucket.ts`, the dispatch through the
 * algorithm registry (`takeBuckets`, `refundTokens`) in `./algorithms/index.ts`.
 */
export * from "./algorithms/token-bucket";
export { takeBuckets, refundTokens, type BucketEntry, type BucketResult } from "./algorithms/index";
