/**
 * The one place that chooses between the protocols: everything else (the front end, the shard
 * threads, the metrics) works with an `Application` (tcp/transport.ts) whatever it relays.
 */
import { dnsApplication, type DnsSettings } from './dns/application.js';
import { httpApplication, type HttpSettings } from './http/application.js';
import type { Application } from './tcp/transport.js';

/** What a front end relays to, as plain data (it is handed to every shard thread). */
export type ApplicationSettings = DnsSettings | HttpSettings;

export function applicationFor(settings: ApplicationSettings): Application {
  return settings.kind === 'dns' ? dnsApplication(settings) : httpApplication(settings);
}
