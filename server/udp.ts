/**
 * UDP sockets for the DHCP and TFTP servers.
 *
 * dgram resolves the destination of every send() through its `lookup`
 * (dns.lookup by default), which even for an IP literal answers on
 * process.nextTick: each reply waits one extra hop, and the hop (plus the
 * async-id bookkeeping around it) showed in DHCP and TFTP CPU profiles as
 * afterDns/doSend. Every address these servers send to is a literal (a
 * client's, a relay's, a broadcast), so literals are answered at once and
 * only names go to dns.lookup.
 */
import { createSocket, type Socket, type SocketType } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/** dgram's `lookup` option: synchronous for IP literals, dns.lookup otherwise. */
export function literalLookup(hostname: string, options: LookupOneOptions | number, callback: LookupCallback): void {
  const family = isIP(hostname);
  if (family !== 0) {
    callback(null, hostname, family);
    return;
  }
  dnsLookup(hostname, options as LookupOneOptions, callback);
}

export function udpSocket(type: SocketType, opts: { reuseAddr?: boolean } = {}): Socket {
  return createSocket({ type, lookup: literalLookup as never, ...(opts.reuseAddr === undefined ? {} : { reuseAddr: opts.reuseAddr }) });
}
