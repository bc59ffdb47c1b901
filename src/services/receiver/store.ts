import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
  type Migration,
  type MigrationProvider,
  type Transaction,
} from "kysely";
import pg from "pg";
import type { RequestStatus, StoredReply } from "../../client/index.js";
import type { StoreLocation } from "./config.js";
import { StoreError } from "./errors.js";

export interface RequestsTable {
  request_id: string;
  agent: string;
  action: string;
  caller: string;
  collective: string;
  reply_to: string;
  discovered: number;
  /** JSON array of the discovered identities */
  nodes: string;
  created_ms: number;
  stored_ms: number;
}

export interface RepliesTable {
  request_id: string;
  sender: string;
  statuscode: number;
  statusmsg: string;
  /** JSON of the reply's data */
  data: string;
  reply_ms: number;
  stored_ms: number;
}

interface Tables {
  chorus_requests: RequestsTable;
  chorus_replies: RepliesTable;
}

export type RequestRow = RequestsTable;
export type ReplyRow = RepliesTable;

// the API's shapes, shared with the client's typed API (client/receiver-api.ts)
export type { RequestStatus, StoredReply };

export interface ListQuery {
  limit: number;
  caller?: string | undefined;
  agent?: string | undefined;
  /** only requests created before this (ms since the epoch) */
  beforeMs?: number | undefined;
}

export interface RepliesQuery {
  limit: number;
  offset: number;
  /** true: only failed replies (statuscode != 0); false: only ok ones */
  failed?: boolean | undefined;
}

export interface WriteResult {
  records: number;
  replies: number;
}

// how long a batch waits for another receiver's SQLite write lock before it counts as failed
const WRITE_LOCK_TIMEOUT_MS = 30_000;

// Rows per INSERT: under SQLite's 32 766 bound parameters and PostgreSQL's 65 535.
const CHUNK = 2000;

function migrations(kind: StoreLocation["kind"]): Record<string, Migration> {
  return {
    "0001_requests_and_replies": {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable("chorus_requests")
          .ifNotExists()
          .addColumn("request_id", "text", (c) => c.primaryKey())
          .addColumn("agent", "text", (c) => c.notNull())
          .addColumn("action", "text", (c) => c.notNull())
          .addColumn("caller", "text", (c) => c.notNull())
          .addColumn("collective", "text", (c) => c.notNull())
          .addColumn("reply_to", "text", (c) => c.notNull())
          .addColumn("discovered", "integer", (c) => c.notNull())
          .addColumn("nodes", "text", (c) => c.notNull())
          .addColumn("created_ms", "bigint", (c) => c.notNull())
          .addColumn("stored_ms", "bigint", (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex("chorus_requests_created")
          .ifNotExists()
          .on("chorus_requests")
          .column("created_ms")
          .execute();
        let replies = db.schema
          .createTable("chorus_replies")
          .ifNotExists()
          .addColumn("request_id", "text", (c) => c.notNull())
          .addColumn("sender", "text", (c) => c.notNull())
          .addColumn("statuscode", "integer", (c) => c.notNull())
          .addColumn("statusmsg", "text", (c) => c.notNull())
          .addColumn("data", "text", (c) => c.notNull())
          .addColumn("reply_ms", "bigint", (c) => c.notNull())
          .addColumn("stored_ms", "bigint", (c) => c.notNull())
          .addPrimaryKeyConstraint("chorus_replies_pk", ["request_id", "sender"]);
        // the primary key is the table: one b-tree per insert instead of a table and an index
        if (kind === "sqlite") replies = replies.modifyEnd(sql`without rowid`);
        await replies.execute();
      },
      async down(db: Kysely<unknown>) {
        await db.schema.dropTable("chorus_replies").ifExists().execute();
        await db.schema.dropTable("chorus_requests").ifExists().execute();
      },
    },
  };
}

const INT8_OID = 20;

/** A pg pool whose BIGINT and count(*) results are numbers (ms timestamps fit a double). */
function pgPool(url: string): pg.Pool {
  return new pg.Pool({
    connectionString: url,
    max: 4,
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
}

const REQUEST_COLUMNS = [
  "request_id",
  "agent",
  "action",
  "caller",
  "collective",
  "reply_to",
  "discovered",
  "nodes",
  "created_ms",
  "stored_ms",
] as const;
const REPLY_COLUMNS = [
  "request_id",
  "sender",
  "statuscode",
  "statusmsg",
  "data",
  "reply_ms",
  "stored_ms",
] as const;

/** A row with every column set to a value of its type: compiles to the statement's placeholders. */
function placeholders<K extends string>(
  cols: readonly K[],
  numeric: readonly string[],
): Record<K, string | number> {
  return Object.fromEntries(cols.map((c) => [c, numeric.includes(c) ? 0 : ""])) as Record<K, string | number>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SQLite's write path: its own connection, statements kysely compiled once and prepared
 * once, and a write lock taken without waiting inside SQLite (busy_timeout 0): while
 * another receiver process holds the lock, this one retries from a timer, so its event
 * loop keeps taking messages instead of sleeping in SQLite's busy handler.
 */
class SqliteWriter {
  private readonly file: Database.Database;
  private readonly begin: Database.Statement;
  private readonly commit: Database.Statement;
  private readonly rollback: Database.Statement;
  private readonly insRequest: Database.Statement;
  private readonly insReply: Database.Statement;

  constructor(path: string, db: Kysely<Tables>) {
    this.file = new Database(path);
    this.file.pragma("journal_mode = WAL");
    this.file.pragma("synchronous = NORMAL");
    this.file.pragma("busy_timeout = 0");
    const req = db
      .insertInto("chorus_requests")
      .values(placeholders(REQUEST_COLUMNS, ["discovered", "created_ms", "stored_ms"]) as RequestRow)
      .onConflict((oc) => oc.column("request_id").doNothing())
      .compile();
    const rep = db
      .insertInto("chorus_replies")
      .values(placeholders(REPLY_COLUMNS, ["statuscode", "reply_ms", "stored_ms"]) as ReplyRow)
      .onConflict((oc) => oc.columns(["request_id", "sender"]).doNothing())
      .compile();
    this.insRequest = this.file.prepare(req.sql);
    this.insReply = this.file.prepare(rep.sql);
    this.begin = this.file.prepare("begin immediate");
    this.commit = this.file.prepare("commit");
    this.rollback = this.file.prepare("rollback");
  }

  /** Writes in one transaction; undefined when another connection holds the write lock. */
  tryWrite(records: readonly RequestRow[], replies: readonly ReplyRow[]): WriteResult | undefined {
    try {
      this.begin.run();
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_BUSY") return undefined;
      throw err;
    }
    try {
      const out = { records: 0, replies: 0 };
      for (const r of records)
        out.records += this.insRequest.run(
          r.request_id,
          r.agent,
          r.action,
          r.caller,
          r.collective,
          r.reply_to,
          r.discovered,
          r.nodes,
          r.created_ms,
          r.stored_ms,
        ).changes;
      for (const r of replies)
        out.replies += this.insReply.run(
          r.request_id,
          r.sender,
          r.statuscode,
          r.statusmsg,
          r.data,
          r.reply_ms,
          r.stored_ms,
        ).changes;
      this.commit.run();
      return out;
    } catch (err) {
      if (this.file.inTransaction) this.rollback.run();
      throw err;
    }
  }

  async write(
    records: readonly RequestRow[],
    replies: readonly ReplyRow[],
    timeoutMs: number,
  ): Promise<WriteResult> {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
      const out = this.tryWrite(records, replies);
      if (out) return out;
      if (Date.now() > deadline) throw new Error(`the database stayed locked for ${timeoutMs} ms`);
      await sleep(wait);
    }
  }

  close(): void {
    this.file.close();
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * The reply store: request records and replies, each stored exactly once whatever is
 * redelivered (INSERT … ON CONFLICT DO NOTHING on the keys). SQLite (WAL, busy timeout:
 * several receiver processes may share one file) or PostgreSQL, through kysely, with the
 * schema migrated at open by kysely's Migrator.
 */
export class ReplyStore {
  private writer: SqliteWriter | undefined;

  private constructor(
    readonly kind: StoreLocation["kind"],
    readonly db: Kysely<Tables>,
  ) {}

  static async open(loc: StoreLocation): Promise<ReplyStore> {
    let db: Kysely<Tables>;
    try {
      if (loc.kind === "sqlite") {
        if (loc.path !== ":memory:") mkdirSync(dirname(loc.path), { recursive: true });
        const file = new Database(loc.path);
        // WAL: readers never wait for the writer. busy_timeout 0: a connection that finds
        // the write lock taken fails at once and is retried from a timer (a busy wait inside
        // SQLite would block this process's event loop, and with it whoever holds the lock
        // when that is another store in the same process). NORMAL: a commit survives a
        // killed process
        file.pragma("journal_mode = WAL");
        file.pragma("busy_timeout = 0");
        file.pragma("synchronous = NORMAL");
        db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: file }) });
      } else {
        db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool: pgPool(loc.url) }) });
      }
    } catch (err) {
      throw new StoreError("open", `cannot open the store: ${(err as Error).message}`, { cause: err });
    }
    const store = new ReplyStore(loc.kind, db);
    try {
      await store.migrate();
      if (loc.kind === "sqlite" && loc.path !== ":memory:") store.writer = new SqliteWriter(loc.path, db);
    } catch (err) {
      await db.destroy().catch(() => {});
      if (err instanceof StoreError) throw err;
      throw new StoreError("open", `cannot open the store: ${(err as Error).message}`, { cause: err });
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const all = migrations(this.kind);
    const provider: MigrationProvider = { getMigrations: () => Promise.resolve(all) };
    const migrator = new Migrator({ db: this.db, provider });
    // receivers starting together race for SQLite's write lock (kysely locks migrations on
    // PostgreSQL only); the schema steps are idempotent and the loser finds the work done
    let last: unknown;
    const attempts = this.kind === "sqlite" ? 50 : 1;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await sleep(20 + Math.random() * 80);
      const { error } = await migrator.migrateToLatest();
      if (!error) return;
      last = error;
    }
    throw new StoreError("migrate", `cannot migrate the store: ${(last as Error)?.message ?? String(last)}`, {
      cause: last,
    });
  }

  /**
   * Stores records and replies in one transaction; what is already stored is left as it
   * is. Returns how many of each were new.
   */
  async write(records: readonly RequestRow[], replies: readonly ReplyRow[]): Promise<WriteResult> {
    const body = async (trx: Kysely<Tables> | Transaction<Tables>): Promise<WriteResult> => {
      const out = { records: 0, replies: 0 };
      for (let i = 0; i < records.length; i += CHUNK) {
        const r = await trx
          .insertInto("chorus_requests")
          .values(records.slice(i, i + CHUNK))
          .onConflict((oc) => oc.column("request_id").doNothing())
          .executeTakeFirst();
        out.records += Number(r.numInsertedOrUpdatedRows ?? 0);
      }
      for (let i = 0; i < replies.length; i += CHUNK) {
        const r = await trx
          .insertInto("chorus_replies")
          .values(replies.length <= CHUNK ? (replies as ReplyRow[]) : replies.slice(i, i + CHUNK))
          .onConflict((oc) => oc.columns(["request_id", "sender"]).doNothing())
          .executeTakeFirst();
        out.replies += Number(r.numInsertedOrUpdatedRows ?? 0);
      }
      return out;
    };
    try {
      if (this.writer) return await this.writer.write(records, replies, WRITE_LOCK_TIMEOUT_MS);
      if (this.kind === "postgres") return await this.db.transaction().execute(body);
      // IMMEDIATE: take the write lock (waiting up to the busy timeout) before reading
      // anything, so a concurrent receiver's commit can never void this transaction
      return await this.db.connection().execute(async (c) => {
        await sql`begin immediate`.execute(c);
        try {
          const out = await body(c);
          await sql`commit`.execute(c);
          return out;
        } catch (err) {
          await sql`rollback`.execute(c).catch(() => {});
          throw err;
        }
      });
    } catch (err) {
      throw new StoreError("write", `cannot store a batch: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The status of one request; undefined when neither its record nor any reply is stored. */
  async status(id: string): Promise<RequestStatus | undefined> {
    return this.read(async () => {
      const rec = await this.db
        .selectFrom("chorus_requests")
        .selectAll()
        .where("request_id", "=", id)
        .executeTakeFirst();
      return this.statusOf(id, rec);
    });
  }

  private async statusOf(id: string, rec: RequestRow | undefined): Promise<RequestStatus | undefined> {
    const agg = await this.db
      .selectFrom("chorus_replies")
      .select((eb) => [
        eb.fn.countAll<number>().as("replied"),
        eb.fn.sum<number>(eb.case().when("statuscode", "=", 0).then(1).else(0).end()).as("ok"),
        eb.fn.max("reply_ms").as("last"),
        eb.fn.min("reply_ms").as("first"),
      ])
      .where("request_id", "=", id)
      .executeTakeFirstOrThrow();
    const replied = Number(agg.replied);
    if (!rec && replied === 0) return undefined;
    const ok = Number(agg.ok ?? 0);
    let expected = 0;
    let matched = 0;
    if (rec) {
      const nodes = new Set(JSON.parse(rec.nodes) as string[]);
      expected = nodes.size;
      if (replied > 0 && expected > 0) {
        const senders = await this.db
          .selectFrom("chorus_replies")
          .select("sender")
          .where("request_id", "=", id)
          .execute();
        for (const s of senders) if (nodes.has(s.sender)) matched++;
      }
    }
    const st: RequestStatus = {
      request_id: id,
      agent: rec?.agent ?? "",
      action: rec?.action ?? "",
      caller: rec?.caller ?? "",
      collective: rec?.collective ?? "",
      created: iso(rec ? Number(rec.created_ms) : Number(agg.first)),
      discovered: rec ? rec.discovered : 0,
      replied,
      ok,
      failed: replied - ok,
      unexpected: rec ? replied - matched : replied,
      complete: rec !== undefined && rec.discovered > 0 && matched === expected,
      known: rec !== undefined,
    };
    if (replied > 0) st.last_reply = iso(Number(agg.last));
    return st;
  }

  /** Request statuses, newest first. */
  async list(q: ListQuery): Promise<RequestStatus[]> {
    return this.read(async () => {
      let query = this.db.selectFrom("chorus_requests").selectAll();
      if (q.caller !== undefined) query = query.where("caller", "=", q.caller);
      if (q.agent !== undefined) query = query.where("agent", "=", q.agent);
      if (q.beforeMs !== undefined) query = query.where("created_ms", "<", q.beforeMs);
      const recs = await query.orderBy("created_ms", "desc").limit(q.limit).execute();
      const out: RequestStatus[] = [];
      for (const rec of recs) {
        const st = await this.statusOf(rec.request_id, rec);
        if (st) out.push(st);
      }
      return out;
    });
  }

  /** A page of a request's replies, by sender. */
  async replies(id: string, q: RepliesQuery): Promise<StoredReply[]> {
    return this.read(async () => {
      let query = this.db
        .selectFrom("chorus_replies")
        .select(["sender", "statuscode", "statusmsg", "data", "reply_ms"])
        .where("request_id", "=", id);
      if (q.failed === true) query = query.where("statuscode", "!=", 0);
      else if (q.failed === false) query = query.where("statuscode", "=", 0);
      const rows = await query.orderBy("sender").limit(q.limit).offset(q.offset).execute();
      return rows.map((r) => ({
        sender: r.sender,
        statuscode: r.statuscode,
        statusmsg: r.statusmsg,
        data: JSON.parse(r.data) as unknown,
        time: iso(Number(r.reply_ms)),
      }));
    });
  }

  /** Rows in each table (for tests and checks). */
  async counts(): Promise<{ requests: number; replies: number }> {
    return this.read(async () => {
      const a = await this.db
        .selectFrom("chorus_requests")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      const b = await this.db
        .selectFrom("chorus_replies")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      return { requests: Number(a.n), replies: Number(b.n) };
    });
  }

  private async read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new StoreError("read", `cannot read the store: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.writer?.close();
    this.writer = undefined;
    await this.db.destroy();
  }
}
