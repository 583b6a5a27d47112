import { describe, expect, it } from "vitest";
import { BACKENDS } from "../support/backends";
import { gatewayWith, randomIp } from "../support/gateway";
import { sleep } from "../support/helpers";

/** Opens a WebSocket through the gateway to the real origin's /ws; resolves with the response and, if upgraded, the socket. */
async function connect(gateway: ReturnType<typeof gatewayWith>, ip: string, apiKey: string) {
  const response = await gateway("/ws", { ip, headers: { upgrade: "websocket", "x-api-key": apiKey } });
  const socket = response.webSocket;
  if (socket === null) return { response, socket };
  socket.accept();
  const received: string[] = [];
  socket.addEventListener("message", (event) => received.push(String(event.data)));
  const next = async (count: number) => {
    const deadline = Date.now() + 5_000;
    while (received.length < count && Date.now() < deadline) await sleep(10);
    return received.slice(0, count);
  };
  return { response, socket, next };
}

describe.each(BACKENDS)("WebSockets through the gateway on the $name backend", ({ vars }) => {
  it("carries messages both ways, with the upgrade charged like any request and refused with 429 when empty", async () => {
    const gateway = gatewayWith({ ...vars, LIMITER_RULES: JSON.stringify([{ name: "ws", key: "ip", capacity: 1, rate: "1/1h" }]) });
    const ip = randomIp();
    const first = await connect(gateway, ip, "alice");
    expect(first.response.status).toBe(101);
    expect(first.response.headers.get("RateLimit")).toBe('"ws";r=0;t=3600');
    if (first.socket === null || first.next === undefined) throw new Error("no socket");
    expect(await first.next(1)).toEqual(["hello alice"]); // the origin saw the client's headers
    first.socket.send("ping");
    expect(await first.next(2)).toEqual(["hello alice", "echo: ping"]);
    first.socket.close(1000, "done");

    const second = await connect(gateway, ip, "alice");
    expect(second.response.status).toBe(429);
    expect(second.socket).toBeNull();
    expect(second.response.headers.get("Retry-After")).toBe("3600");
  });
});
