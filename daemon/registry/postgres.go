package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the PostgreSQL NOTIFY channel on which every write is
// announced (payload: tenant/id).
const Channel = "envelopd_registry"

// SchemaVersion is the newest schema this envelopd knows.
var SchemaVersion = len(migrations)

// lockID is the pg_advisory_lock key that serialises migrations between
// instances starting at once ("envelopd" in ASCII).
const lockID int64 = 0x656e76656c6f7064

// migrations[i] brings the schema from version i to i+1. Append only.
var migrations = []string{
	`CREATE TABLE envelopd_key_owners (
		key_name text PRIMARY KEY,
		tenant   text NOT NULL,
		UNIQUE (key_name, tenant)
	);
	CREATE TABLE envelopd_uploads (
		tenant      text NOT NULL,
		id          text NOT NULL,
		backend     text NOT NULL DEFAULT '',
		key         text NOT NULL DEFAULT '',
		key_name    text,
		created_key boolean NOT NULL DEFAULT false,
		padding     text NOT NULL DEFAULT '',
		state       text NOT NULL,
		keyid       boolean NOT NULL DEFAULT false,
		chain       text NOT NULL,
		created     timestamptz NOT NULL,
		PRIMARY KEY (tenant, id),
		FOREIGN KEY (key_name, tenant) REFERENCES envelopd_key_owners (key_name, tenant)
	);`,
	`ALTER TABLE envelopd_uploads ADD COLUMN pending boolean NOT NULL DEFAULT false;`,
}

// Postgres is the registry in a PostgreSQL database shared by several
// daemons. Its tables are named envelopd_*.
type Postgres struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the LISTEN connection

	closeOnce sync.Once
}

// OpenPostgres connects to the database at url (a PostgreSQL URL or
// key=value string), creates or migrates the schema, and returns the
// registry. Several instances may open one database at once: migrations
// are serialised by an advisory lock. A database whose schema is newer
// than this envelopd is refused.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx error texts can quote the connection string: say only what.
		return nil, errors.New("registry url: not a valid PostgreSQL connection string")
	}
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > 5*time.Second {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if pc.MaxConns < 4 {
		pc.MaxConns = 4
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	p := &Postgres{pool: pool, connCfg: pc.ConnConfig.Copy()}
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) migrate(ctx context.Context) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return unavailable("connect", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
		return unavailable("lock", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockID)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS envelopd_schema_version (version integer NOT NULL)`); err != nil {
		return fmt.Errorf("registry: creating envelopd_schema_version: %w", err)
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM envelopd_schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("registry: reading the schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("registry: the database schema is version %d, newer than this envelopd knows (%d); upgrade envelopd", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM envelopd_schema_version; INSERT INTO envelopd_schema_version (version) VALUES (`+fmt.Sprint(v+1)+`)`)
			return err
		})
		if err != nil {
			return fmt.Errorf("registry: migrating the schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

// Load reads every record.
func (p *Postgres) Load(ctx context.Context) ([]*Record, error) {
	rows, err := p.pool.Query(ctx, `SELECT tenant, id, backend, key, coalesce(key_name, ''), created_key, pending, padding, state, keyid, chain, created FROM envelopd_uploads ORDER BY tenant, id`)
	if err != nil {
		return nil, unavailable("load", err)
	}
	out := []*Record{}
	for rows.Next() {
		r := &Record{Version: 1, Origin: "registry"}
		if err := rows.Scan(&r.Tenant, &r.ID, &r.Backend, &r.Key, &r.KeyName, &r.CreatedKey, &r.Pending, &r.Padding, &r.State, &r.KeyID, &r.Chain, &r.Created); err != nil {
			rows.Close()
			return nil, unavailable("load", err)
		}
		r.Created = r.Created.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("load", err)
	}
	sortRecords(out) // the database's collation may differ from Go's order
	return out, nil
}

// Put adds r in one transaction: the key name's owner (created if the key
// has none, checked otherwise), the record, and a notification.
func (p *Postgres) Put(ctx context.Context, r *Record) error {
	return writeError("put", pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := putTx(ctx, tx, r); err != nil {
			return err
		}
		return notify(ctx, tx, r.Tenant, r.ID)
	}))
}

// Replace overwrites r in one transaction.
func (p *Postgres) Replace(ctx context.Context, r *Record) error {
	return writeError("replace", pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := deleteTx(ctx, tx, r.Tenant, r.ID); err != nil {
			return err
		}
		if err := putTx(ctx, tx, r); err != nil {
			return err
		}
		return notify(ctx, tx, r.Tenant, r.ID)
	}))
}

func notify(ctx context.Context, tx pgx.Tx, tenant, id string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, tenant+"/"+id)
	return err
}

func putTx(ctx context.Context, tx pgx.Tx, r *Record) error {
	var keyName *string
	if r.KeyName != "" {
		keyName = &r.KeyName
		if _, err := tx.Exec(ctx, `INSERT INTO envelopd_key_owners (key_name, tenant) VALUES ($1, $2) ON CONFLICT (key_name) DO NOTHING`, r.KeyName, r.Tenant); err != nil {
			return err
		}
		var owner string
		if err := tx.QueryRow(ctx, `SELECT tenant FROM envelopd_key_owners WHERE key_name = $1 FOR SHARE`, r.KeyName).Scan(&owner); err != nil {
			return err
		}
		if owner != r.Tenant {
			return ErrKeyOwned
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO envelopd_uploads (tenant, id, backend, key, key_name, created_key, pending, padding, state, keyid, chain, created)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		r.Tenant, r.ID, r.Backend, r.Key, keyName, r.CreatedKey, r.Pending, r.Padding, r.State, r.KeyID, r.Chain, r.Created.UTC())
	return err
}

func deleteTx(ctx context.Context, tx pgx.Tx, tenant, id string) error {
	var keyName *string
	err := tx.QueryRow(ctx, `DELETE FROM envelopd_uploads WHERE tenant = $1 AND id = $2 RETURNING key_name`, tenant, id).Scan(&keyName)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if keyName != nil {
		if _, err := tx.Exec(ctx, `DELETE FROM envelopd_key_owners o WHERE o.key_name = $1 AND NOT EXISTS (SELECT 1 FROM envelopd_uploads u WHERE u.key_name = o.key_name)`, *keyName); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a record in one transaction, and the key name's owner
// with the last record naming it.
func (p *Postgres) Delete(ctx context.Context, tenant, id string) error {
	return writeError("delete", pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := deleteTx(ctx, tx, tenant, id); err != nil {
			return err
		}
		return notify(ctx, tx, tenant, id)
	}))
}

// writeError maps a transaction's error to the package's errors.
func writeError(op string, err error) error {
	if err == nil || errors.Is(err, ErrExists) || errors.Is(err, ErrKeyOwned) || errors.Is(err, ErrNotFound) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			if pe.ConstraintName == "envelopd_uploads_pkey" {
				return ErrExists
			}
			return ErrKeyOwned
		case "23503": // foreign_key_violation: the key's owner is another tenant
			return ErrKeyOwned
		}
		if len(pe.Code) == 5 && pe.Code[:2] != "08" && pe.Code[:2] != "57" && pe.Code[:2] != "53" {
			return fmt.Errorf("registry: %s: %w", op, err)
		}
	}
	return unavailable(op, err)
}

// Ping checks that the database answers.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the connections.
func (p *Postgres) Close() error {
	p.closeOnce.Do(p.pool.Close)
	return nil
}

// Watch listens on Channel over a connection of its own, reconnecting
// every second while the database is away; see [Watcher].
func (p *Postgres) Watch(ctx context.Context, changed func(err error)) {
	for ctx.Err() == nil {
		err := p.listen(ctx, changed)
		if ctx.Err() != nil {
			return
		}
		changed(unavailable("listen", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (p *Postgres) listen(ctx context.Context, changed func(err error)) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, p.connCfg.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return err
	}
	changed(nil) // notifications may have been missed while not listening
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		changed(nil)
	}
}
