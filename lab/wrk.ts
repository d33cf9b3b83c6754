/** Reading wrk's report (wrk 4.1), for the HTTP lab tests and the HTTP benchmark. */

export interface WrkReport {
  requests: number;
  requestsPerSecond: number;
  transferMiBPerSecond: number;
  /** Connect, read, write and timeout errors together (0 when wrk prints no such line). */
  socketErrors: number;
  /** Responses other than 2xx and 3xx. */
  non2xx: number;
  /** From the Latency line; undefined if wrk printed none. */
  averageLatencyMs: number | undefined;
  maxLatencyMs: number | undefined;
}

const ms = (value: string, unit: string): number => Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? NaN);

export function parseWrk(output: string): WrkReport {
  const latency = /Latency\s+([\d.]+)(us|ms|s)\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)/.exec(output);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(output);
  const scale = { B: 1 / 2 ** 20, KB: 1 / 1024, MB: 1, GB: 1024 }[(transfer?.[2] ?? 'MB') as 'MB'];
  return {
    requests: Number(/(\d+) requests in/.exec(output)?.[1] ?? NaN),
    requestsPerSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1]),
    transferMiBPerSecond: Number(transfer?.[1]) * scale,
    socketErrors: socket === null ? 0 : socket.slice(1).reduce((sum, n) => sum + Number(n), 0),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
    averageLatencyMs: latency === null ? undefined : ms(latency[1]!, latency[2]!),
    maxLatencyMs: latency === null ? undefined : ms(latency[3]!, latency[4]!),
  };
}
