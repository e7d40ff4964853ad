import t from 'tap';
import { startFixture, SERVER_URL } from '../../helpers/http-fixture.js';
import { runCli } from '../../helpers/cli.js';
import { packageFile } from '../../../server/paths.js';
import { requireMac, type Mac } from '../../../server/mac.js';

const WORKER1 = requireMac('52:54:00:5b:00:11');
const WORKER4 = requireMac('52:54:00:5b:00:21'); // pxelinux + oem profile
const IGN_TYPE = 'application/vnd.coreos.ignition+json;version=3.3.0';

t.test('/boot.ipxe: the generic script from the boot service', async (t) => {
  const f = await startFixture(t);
  const r = await f.request('/boot.ipxe');
  t.equal(r.status, 200);
  t.equal(r.text, f.boot.bootScript());
  t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  t.equal(r.headers['content-length'], String(r.body.length));
  t.match(r.text, /\$\{netX\/mac:hexhyp\}/);
});

t.test('/ipxe, /ignition, /oem.cpio.gz: byte for byte what `swarmboot render` prints', async (t) => {
  const f = await startFixture(t);
  const cases: [string, string, Mac, string][] = [
    ['ipxe', '/ipxe', WORKER1, 'text/plain; charset=utf-8'],
    ['ignition', '/ignition', WORKER1, IGN_TYPE],
    ['oem', '/oem.cpio.gz', WORKER4, 'application/gzip'],
  ];
  for (const [kind, path, mac, type] of cases) {
    const cli = await runCli(['render', kind, '--mac', mac, '--profiles', packageFile('profiles'), '--state', f.stateDir, '--server-url', SERVER_URL]);
    t.equal(cli.code, 0, `render ${kind}`);
    const want = kind === 'oem' ? cli.bytes : Buffer.from(cli.out);
    for (const form of [mac, mac.replace(/:/g, '-').toUpperCase(), mac.replace(/:/g, '')]) {
      const r = await f.request(`${path}?mac=${form}`);
      t.equal(r.status, 200, `${kind} ${form}`);
      t.ok(r.body.equals(want), `${kind} ${form}: same bytes as render`);
    }
    const r = await f.request(`${path}?mac=${mac}`);
    t.equal(r.headers['content-type'], type, `${kind} content type`);
    t.equal(r.headers['content-length'], String(want.length));
    t.equal(r.headers.etag, f.boot.render(kind as 'ipxe', mac).etag, `${kind}: the service's strong ETag`);
    t.equal(r.headers['cache-control'], kind === 'ipxe' ? 'no-cache' : 'no-store', `${kind} cache-control`);

    const nm = await f.request(`${path}?mac=${mac}`, { headers: { 'if-none-match': String(r.headers.etag) } });
    t.equal(nm.status, 304, `${kind} If-None-Match`);
    t.equal(nm.body.length, 0);
    const head = await f.request(`${path}?mac=${mac}`, { method: 'HEAD' });
    t.equal(head.status, 200);
    t.equal(head.body.length, 0);
    t.equal(head.headers['content-length'], String(want.length));
  }
  t.equal(JSON.parse((await f.request(`/ignition?mac=${WORKER1}`)).text).ignition.version, '3.3.0');
});

t.test('unknown MAC 404, malformed MAC 400, each one line', async (t) => {
  const f = await startFixture(t);
  const cases: [string, number, RegExp][] = [
    ['/ignition?mac=52:54:00:99:99:99', 404, /^E_NO_MATCH: no profile for MAC 52:54:00:99:99:99 /],
    ['/ipxe?mac=52-54-00-99-99-99', 404, /^E_NO_MATCH: /],
    ['/oem.cpio.gz?mac=52:54:00:99:99:99', 404, /^E_NO_MATCH: /],
    ['/ignition?mac=zz', 400, /^E_BAD_REQUEST: not a MAC address: "zz"/],
    ['/ipxe?mac=52:54:00:5b:00', 400, /^E_BAD_REQUEST: not a MAC address/],
    ['/ipxe', 400, /^E_BAD_REQUEST: missing \?mac=/],
    ['/ipxe?mac=52:54:00:5b:00:11&mac=52:54:00:5b:00:12', 400, /^E_BAD_REQUEST: give exactly one \?mac=/],
  ];
  for (const [path, status, msg] of cases) {
    const r = await f.request(path);
    t.equal(r.status, status, path);
    t.match(r.text, msg, path);
    t.equal(r.text.split('\n').length, 2, `${path}: one line`);
    t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  }
  t.equal(f.machines.all().length, 0, 'refused requests put nothing on a trail');
  const logged = f.logs.filter((l) => l.msg === 'ignition not served');
  t.equal(logged.length, 1);
  t.match(logged[0], { mac: '52:54:00:99:99:99', code: 'E_NO_MATCH', ip: '127.0.0.1', reason: /no profile/ });
});

t.test('each served artefact goes on the boot trail and is logged once with its reasons', async (t) => {
  const f = await startFixture(t, { macOfIp: (ip) => (ip === '127.0.0.1' ? WORKER4 : null) });
  await f.request('/boot.ipxe');
  await f.request(`/ipxe?mac=${WORKER4}`);
  await f.request(`/oem.cpio.gz?mac=${WORKER4}`);
  await f.request(`/ignition?mac=${WORKER4}`);
  await f.request(`/ignition?mac=${WORKER4}`, { method: 'HEAD' });
  const trail = f.machines.get(WORKER4)?.trail ?? [];
  t.same(
    trail.map((e) => [e.step, e.ip, e.detail]),
    [
      ['ipxe-script', '127.0.0.1', '/boot.ipxe'],
      ['ipxe-script', '127.0.0.1', undefined],
      ['oem', '127.0.0.1', undefined],
      ['ignition', '127.0.0.1', undefined],
    ],
    'HEAD is not a boot step',
  );
  const served = f.logs.filter((l) => l.msg === 'served ignition');
  t.equal(served.length, 2, 'GET and HEAD, one line each');
  t.match(served[0], { subsystem: 'http', mac: WORKER4, route: 'ignition', ip: '127.0.0.1', status: 200, hostname: 'worker4', profile: 'worker-pxelinux', known: true, gated: false });
});

t.test('secret gate: Ignition and oem refused with 403, logged, counted; iPXE script not gated', async (t) => {
  const asked: [string, string][] = [];
  const f = await startFixture(t, {
    secretGate: (mac, ip) => {
      asked.push([mac, ip]);
      return mac === WORKER1 ? null : `${ip} holds no lease for ${mac}`;
    },
  });
  const ok = await f.request(`/ignition?mac=${WORKER1.replace(/:/g, '-')}`);
  t.equal(ok.status, 200, 'the gate lets the lease holder through');
  for (const path of [`/ignition?mac=${WORKER4}`, `/oem.cpio.gz?mac=${WORKER4}`, '/ignition?mac=52:54:00:99:99:99']) {
    const r = await f.request(path);
    t.equal(r.status, 403, path);
    t.match(r.text, /^E_FORBIDDEN: (ignition|oem) for 52:54:00:\S+ is not served to 127\.0\.0\.1: 127\.0\.0\.1 holds no lease/);
    t.equal(r.text.split('\n').length, 2);
    t.notOk(r.headers.etag, 'nothing about the artefact leaks');
  }
  t.equal((await f.request(`/ipxe?mac=${WORKER4}`)).status, 200, 'iPXE script carries no secret');
  t.same(asked[0], [WORKER1, '127.0.0.1'], 'gate sees the canonical MAC and the peer address');
  t.equal(asked.length, 4);
  t.equal(f.metrics.counter('swarmboot_http_secret_refusals_total', '').get(), 3);
  const warns = f.logs.filter((l) => l.level === 40 && /secret gate/.test(l.msg));
  t.equal(warns.length, 3);
  t.match(warns[0], { mac: WORKER4, ip: '127.0.0.1', route: 'ignition', reason: /holds no lease/ });
  const metrics = (await f.request('/metrics')).text;
  t.match(metrics, /^swarmboot_http_secret_refusals_total 3$/m);
  t.match(metrics, /^swarmboot_http_requests_total\{route="ignition",status="403"\} 2$/m);
  t.equal(f.machines.get(WORKER4)?.trail.map((e) => e.step).join(','), 'ipxe-script', 'refusals are not boot steps');
});

t.test('the boot lane and the express routes give the same answers; other methods and paths fall through to express', async (t) => {
  const f = await startFixture(t);
  const exact = await f.request(`/ignition?mac=${WORKER1}`);
  // Express also matches a trailing slash and another letter case; those come through the router, with the same code.
  for (const path of [`/ignition/?mac=${WORKER1}`, `/IGNITION?mac=${WORKER1}`]) {
    const r = await f.request(path);
    t.equal(r.status, 200, path);
    t.ok(r.body.equals(exact.body), `${path}: same body`);
    t.equal(r.headers.etag, exact.headers.etag, `${path}: same ETag`);
    t.equal(r.headers['content-type'], exact.headers['content-type'], `${path}: same type`);
  }
  const post = await f.request(`/ignition?mac=${WORKER1}`, { method: 'POST' });
  t.equal(post.status, 404, 'POST is not served');
  t.match(post.text, /^E_NOT_FOUND: no route for POST \/ignition/);
  const encoded = await f.request(`/ipxe?mac=${encodeURIComponent(WORKER1)}&x=1`);
  t.equal(encoded.status, 200, 'percent-encoded MAC and other parameters');
  const m = (await f.request('/metrics')).text;
  t.match(m, /^swarmboot_http_requests_total\{route="ignition",status="200"\} 3$/m, 'lane and router requests counted alike');
  t.match(m, /^swarmboot_http_requests_total\{route="unmatched",status="404"\} 1$/m, "the POST, as before");
  t.match(m, new RegExp(`^swarmboot_http_bytes_sent_total\\{route="ignition"\\} ${exact.body.length * 3}$`, 'm'));
});
