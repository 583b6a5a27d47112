import { DEFAULT_URL } from "./args";

/** `sluice --help`: every command, flag and exit code (docs/cli.md says the same at length). */
export const HELP = `sluice: make a sluice gateway project, and operate a running gateway over its admin API

Usage:
  sluice peek    [--rule NAME] --client PART=VALUE...   the client's bucket(s) as they stand; consumes nothing
  sluice reset   [--rule NAME] --client PART=VALUE...   make the client's bucket(s) full again
  sluice check    --rule NAME  --client PART=VALUE... [--cost N]
                                                       charge the client like traffic; exit 2 if refused
  sluice overrides list                                every override, exact and prefix
  sluice overrides set    --rule NAME --client PART=VALUE... --capacity N --rate RATE
                                                       a client's own limit (a value ending in * covers a prefix)
  sluice overrides remove --rule NAME --client PART=VALUE...
  sluice status                                        the gateway's health: config, store, breaker
  sluice status --path /PATH [--method M] [--header NAME=VALUE...]
                                                       the buckets such a request would be charged to
  sluice init DIR [--sluice-version SPEC]              write a gateway project (wrangler.toml, src/index.ts, …)
                                                       into a new or empty folder
  sluice init --check DIR                              check its wrangler.toml against this sluice's classes;
                                                       exit 1 with the [[migrations]] block to append

Flags:
  --client PART=VALUE   a key part of the rule and its value, repeatable: header:x-api-key=abc,
                        ip=203.0.113.7, bearer=TOKEN, route="POST /login"
  --rate RATE           tokens per second (10, 0.5) or N/period: 1000/1m, 5/30s, 10000/1d
  --url URL             the gateway (default: $SLUICE_URL, else ${DEFAULT_URL})
  --json                print the gateway's JSON answer (for scripts) instead of a table
  -h, --help            this text

Environment:
  SLUICE_ADMIN_TOKEN    the gateway's LIMITER_ADMIN_TOKEN; read from here only, never from a flag
  SLUICE_URL            the gateway, when --url is not given

Exit codes:
  0  done (check: allowed; status: healthy)
  1  usage: a wrong command line, or the gateway answered 400 naming the field it could not use
  2  refused: check was refused, status --path would be refused, or a 429
  3  unauthorized (401): SLUICE_ADMIN_TOKEN unset or not the gateway's LIMITER_ADMIN_TOKEN
  4  not found (404): the admin API is off (set LIMITER_ADMIN_TOKEN), or no sluice gateway at --url
  5  unavailable: gateway unreachable or timed out, a 5xx (store down, invalid configuration),
     or status found it unhealthy
`;
