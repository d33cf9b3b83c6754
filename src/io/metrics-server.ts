/**
 * `--metrics ADDR:PORT`: Prometheus text at GET /metrics (anything else: 404).
 */
import http from 'node:http';
import { formatEndpoint, type Endpoint } from '../endpoint.js';
import { EXPOSITION_CONTENT_TYPE } from '../metrics.js';

export interface MetricsServer {
  close(): void;
}

/** Listens on `endpoint`; throws an Error with a one-line message naming the fix. */
export async function startMetricsServer(endpoint: Endpoint, exposition: () => Promise<string>): Promise<MetricsServer> {
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at /metrics\n');
      return;
    }
    exposition().then(
      (text) => response.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const where = formatEndpoint(endpoint);
      const fix =
        error.code === 'EADDRINUSE'
          ? 'another server listens there: pick another --metrics'
          : error.code === 'EADDRNOTAVAIL'
            ? 'no interface has that address: pick one from `ip address show`'
            : error.message;
      reject(new Error(`cannot serve metrics on ${where}: ${fix}`));
    });
    server.listen({ host: endpoint.address, port: endpoint.port }, resolve);
  });
  // Scrapes are short; do not let an idle keep-alive connection hold the process open at stop.
  server.keepAliveTimeout = 1000;
  return { close: () => server.close() };
}
