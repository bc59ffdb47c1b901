// `chorus setup dev --x509-port N`: the v2 dev setup plus what a protocol v1 (x509) part
// needs to join it: the broker's x509 edge (a second, mTLS-only port bridged into the
// CHORIA account), RSA certificates from the dev CA, a v1 client, v1 emulated nodes, and a
// client that speaks both protocols to the mixed fleet.
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { x509EdgePermissions } from "../../broker/index.js";
import { issueCert, issueLeafCredentials, type CertPair } from "../../core/security/index.js";
import { issueClientCredential, writeSecret, type IssuingAuthority } from "./credentials.js";
import type { conf as Conf } from "./dev.js";

export interface MixedDevContext {
  dir: string;
  authority: IssuingAuthority & { trust: NonNullable<IssuingAuthority["trust"]> };
  ca: CertPair;
  collective: string;
  brokerConfig: string;
  x509Port: number;
  validityS: number;
  /** the certname user part: `<user>.mcollective` */
  user: string;
  common: Record<string, string | number | boolean | undefined>;
  conf: typeof Conf;
}

export interface MixedDevFiles {
  x509Port: number;
  x509Url: string;
  /** the edge user's NATS credentials (written into broker.conf) */
  edgeCredentials: string;
  /** v1 client: `choria=<user>.mcollective`, mTLS to the x509 port */
  x509ClientConfig: string;
  /** v1 emulated nodes on the x509 port: `chorus emulate --config x509-emulator.conf` */
  x509EmulatorConfig: string;
  /** one client for both: a v2 token for the same caller id, the x509 files, protocols 1,2 */
  mixedClientConfig: string;
  certname: string;
}

const YEAR_DAYS = 365;

export async function createMixedDevFiles(ctx: MixedDevContext): Promise<MixedDevFiles> {
  const { dir, authority, ca, conf } = ctx;
  const certname = `${ctx.user}.mcollective`;
  const callerId = `choria=${certname}`;

  const edgeCredentials = join(dir, "credentials", "x509-edge.creds");
  writeSecret(
    edgeCredentials,
    await issueLeafCredentials(authority.issuer, authority.trust, {
      name: "x509-edge",
      perms: x509EdgePermissions([ctx.collective]),
      expiresAt: Math.floor(Date.now() / 1000) + ctx.validityS,
    }),
  );
  appendFileSync(
    ctx.brokerConfig,
    [
      "",
      "# the x509 edge: protocol v1 clients with a certificate from tls/ca.pem (`--x509-port`)",
      `plugin.chorus.network.x509.port = ${ctx.x509Port}`,
      "plugin.chorus.network.x509.credentials = credentials/x509-edge.creds",
      "",
    ].join("\n"),
  );

  // v1 signs with RSA: these leaves are RSA, from the same dev CA as the broker's TLS
  const leaf = async (name: string, cn: string) => {
    const p = await issueCert(ca, cn, {}, YEAR_DAYS, "client", { rsa: true });
    writeFileSync(join(dir, "tls", `${name}.pem`), p.certPem);
    writeSecret(join(dir, "tls", `${name}.key`), p.keyPem);
  };
  await leaf(certname, certname);
  await leaf("x509-emulator.mcollective", "x509-emulator.mcollective");

  const x509Url = `tls://127.0.0.1:${ctx.x509Port}`;
  const fileKeys = (name: string) => ({
    "plugin.security.file.certificate": `tls/${name}.pem`,
    "plugin.security.file.key": `tls/${name}.key`,
    "plugin.security.file.ca": "tls/ca.pem",
  });
  const v1 = {
    collectives: ctx.collective,
    main_collective: ctx.collective,
    "plugin.choria.middleware_hosts": x509Url,
    "plugin.security.provider": "file",
  };
  const x509ClientConfig = join(dir, "x509-client.conf");
  writeFileSync(
    x509ClientConfig,
    conf({ ...v1, ...fileKeys(certname) }, "Protocol v1 client on the x509 edge"),
  );
  const x509EmulatorConfig = join(dir, "x509-emulator.conf");
  writeFileSync(
    x509EmulatorConfig,
    conf(
      { ...v1, ...fileKeys("x509-emulator.mcollective"), "plugin.actionpolicy.allow_unconfigured": true },
      "Protocol v1 emulated nodes on the x509 edge",
    ),
  );

  // its v2 token names the same caller, so both kinds of reply come to one inbox
  await issueClientCredential(
    authority,
    {
      seedFile: join(dir, "credentials", "mixed-client.seed"),
      tokenFile: join(dir, "credentials", "mixed-client.jwt"),
    },
    { callerid: callerId, validityS: ctx.validityS, permissions: { fleet_management: true } },
  );
  const mixedClientConfig = join(dir, "mixed-client.conf");
  writeFileSync(
    mixedClientConfig,
    conf(
      {
        ...ctx.common,
        "plugin.security.choria.seed_file": "credentials/mixed-client.seed",
        "plugin.security.choria.token_file": "credentials/mixed-client.jwt",
        ...fileKeys(certname),
        "plugin.chorus.protocols": "1,2",
      },
      "One client for a mixed fleet: every request in protocol v1 and v2",
    ),
  );
  return {
    x509Port: ctx.x509Port,
    x509Url,
    edgeCredentials,
    x509ClientConfig,
    x509EmulatorConfig,
    mixedClientConfig,
    certname,
  };
}
