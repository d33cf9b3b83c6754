/**
 * nginx as the backend web server of `stateless-tcp http`, in a lab's server namespace on
 * 127.0.0.1:8080 (or another port, for a second backend of a pool), serving files a test writes and accepting PUT (WebDAV) so that a request
 * body can be fetched back and compared byte for byte.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from './lab.js';
import { requireTools } from './tools.js';

export const NGINX_PORT = 8080;

export interface NginxOptions {
  /** More `listen` addresses for the same server (e.g. the server's lab address, for benchmarks). */
  alsoListen?: readonly string[];
  /** Worker processes (default 1). */
  workers?: number;
  /** The port on 127.0.0.1 (default NGINX_PORT). */
  port?: number;
  /** Its directory under the lab's temporary directory (default `nginx`): one per instance. */
  name?: string;
}

export interface Nginx {
  /** `http://127.0.0.1:8080` (its port), as the front end's --upstream. */
  readonly origin: string;
  /** The document root: files written here are served at `/name`. */
  readonly root: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Locations: files from the root; `/echo-headers` answers with the request's X-Forwarded-For,
 * method, Content-Length and Connection; `/put/…` takes PUT up to 1 MiB, `/upload/…` of any size;
 * `/chunked` answers a body without a length (nginx sends it chunked); `/slow` answers after 30 s
 * (for 504).
 */
export async function startNginx(lab: Lab, options: NginxOptions = {}): Promise<Nginx> {
  requireTools('nginx');
  const dir = join(lab.tempDir, options.name ?? 'nginx');
  const port = options.port ?? NGINX_PORT;
  const root = join(dir, 'www');
  await mkdir(join(root, 'put'), { recursive: true });
  const config = `
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
${nginxPreamble(dir, options.workers ?? 1)}
  keepalive_requests 100000;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port} backlog=4096;${(options.alsoListen ?? []).map((address) => `\n    listen ${address} backlog=4096;`).join('')}
    root ${root};
    location = /echo-headers {
      default_type text/plain;
      return 200 "xff=$http_x_forwarded_for method=$request_method length=$content_length connection=$http_connection\\n";
    }
    location /put/ {
      dav_methods PUT DELETE;
      create_full_put_path on;
      client_max_body_size 1m;
    }
    location /upload/ {
      # Uploads of any size, Content-Length or chunked, written to a file the test reads back:
      # the front end's --max-body-size is the limit under test, not this one.
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
    }
    location = /chunked {
      default_type text/plain;
      # gzip off and no length: the echo module streams the body chunked.
      echo "first line";
      echo_flush;
      echo "second line";
    }
    location = /slow {
      echo_sleep 30;
      echo "late";
    }
  }
}
`;
  await writeFile(join(dir, 'nginx.conf'), config);
  const check = await lab.exec('server', ['nginx', '-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')]);
  if (check.code !== 0)
    throw new Error(`nginx refuses its lab config (apt-get install nginx-light for the echo module): ${check.stderr.trim()}`);
  const child = lab.spawn('server', ['nginx', '-p', dir, '-c', join(dir, 'nginx.conf')]);
  // nginx prints nothing when it starts well: wait until it accepts connections.
  const deadline = Date.now() + 5000;
  for (;;) {
    const probe = await lab.exec(
      'server',
      ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/echo-headers`],
      { timeoutMs: 2000 },
    );
    if (probe.stdout === '200') break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`nginx did not start: ${probe.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    origin: `http://127.0.0.1:${port}`,
    root,
    process: child,
    stop: () => lab.stop(child),
  };
}

/**
 * The top of an nginx.conf for a lab instance living in `dir`: as root (the lab's files are
 * root's), in the foreground, every path under `dir`; ends inside the `http` block.
 */
export function nginxPreamble(dir: string, workers: number): string {
  return `user root;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;`;
}

/** Writes `bytes` to the document root as `name`. */
export async function serveFile(nginx: Nginx, name: string, bytes: Uint8Array): Promise<void> {
  await writeFile(join(nginx.root, name), bytes);
}
