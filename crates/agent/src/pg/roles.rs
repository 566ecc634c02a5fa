//! The privilege model of a database's own roles.
//!
//! The database's admin role (the user's) can create databases and manage
//! roles, but can never obtain what reaches the operating system: the
//! predefined roles `pg_execute_server_program`, `pg_read_server_files`
//! and `pg_write_server_files`, superuser, replication, or pgfleet's own
//! roles.
//!
//! On PostgreSQL 15 and older, `CREATEROLE` lets a role grant itself any
//! predefined role, so the admin role does not get it there. It manages
//! roles through `SECURITY DEFINER` functions in the schema `pgfleet`
//! (installed in `template1`, so every new database has them too), owned by
//! the `NOLOGIN` role `pgfleet_role_admin`:
//!
//! - `pgfleet.create_role(name, password DEFAULT NULL, login DEFAULT true)`:
//!   a plain role (no superuser, createdb, createrole, replication,
//!   bypassrls); the admin gets it `WITH ADMIN OPTION`, so it grants it to
//!   others with a plain `GRANT`;
//! - `pgfleet.set_password(name, password)`, `pgfleet.drop_role(name)`: only
//!   for roles the admin holds with admin option.
//!
//! From PostgreSQL 16 on, `CREATEROLE` only grants roles its holder has
//! admin option on, so the admin role keeps it there (and the functions
//! work too). `harden` also repairs databases made before this model:
//! it takes `CREATEROLE` from every role but ours and revokes the three
//! predefined roles from everyone who is not a superuser.

use tokio_postgres::Client;

use super::sql::{quote_ident, quote_literal};

/// The predefined roles that reach the server's files and programs.
pub const OS_ROLES: [&str; 3] = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
];

/// The owner of the role-management functions.
pub const ROLE_ADMIN: &str = "pgfleet_role_admin";

/// `CREATEDB` always; `CREATEROLE` only where it cannot reach the OS roles.
pub fn admin_attributes(server_version_num: i32) -> &'static str {
    if server_version_num >= 160_000 {
        "CREATEDB CREATEROLE"
    } else {
        "CREATEDB NOCREATEROLE"
    }
}

pub async fn server_version_num(client: &Client) -> anyhow::Result<i32> {
    let text: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await?
        .get(0);
    Ok(text.trim().parse()?)
}

/// Repairs what an earlier privilege model allowed (idempotent): no role
/// but superusers and ours keeps `CREATEROLE` on PostgreSQL ≤ 15, nobody
/// but superusers is a member of the OS roles, and `pgfleet_role_admin`
/// exists.
pub async fn harden(client: &Client, admin: &str) -> anyhow::Result<()> {
    let version = server_version_num(client).await?;
    // Catalog repairs need no standby's acknowledgement (a primary whose
    // standby is away must not wait here); a new primary repeats them.
    // Only for these statements: the session is the agent's own.
    client
        .batch_execute("SET synchronous_commit = local")
        .await?;
    let repaired = repair(client, admin, version).await;
    client.batch_execute("RESET synchronous_commit").await?;
    repaired
}

async fn repair(client: &Client, admin: &str, version: i32) -> anyhow::Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&ROLE_ADMIN])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE ROLE {} NOLOGIN CREATEROLE",
                quote_ident(ROLE_ADMIN)
            ))
            .await?;
    }
    let admin_createrole: Option<bool> = client
        .query_opt(
            "SELECT rolcreaterole FROM pg_roles WHERE rolname = $1",
            &[&admin],
        )
        .await?
        .map(|row| row.get(0));
    let wanted_createrole = version >= 160_000;
    if admin_createrole.is_some_and(|has| has != wanted_createrole) {
        client
            .batch_execute(&format!(
                "ALTER ROLE {} WITH {}",
                quote_ident(admin),
                admin_attributes(version)
            ))
            .await?;
    }
    if version < 160_000 {
        let holders = client
            .query(
                "SELECT rolname FROM pg_roles WHERE rolcreaterole AND NOT rolsuper AND rolname <> $1",
                &[&ROLE_ADMIN],
            )
            .await?;
        for row in holders {
            let role: String = row.get(0);
            tracing::warn!(role = %role, "taking CREATEROLE from a role (it reaches the OS roles on this version)");
            client
                .batch_execute(&format!("ALTER ROLE {} NOCREATEROLE", quote_ident(&role)))
                .await?;
        }
    }
    let members = client
        .query(
            "SELECT r.rolname, m.rolname FROM pg_auth_members a \
             JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
             WHERE r.rolname = ANY($1) AND NOT m.rolsuper",
            &[&OS_ROLES.to_vec()],
        )
        .await?;
    for row in members {
        let (role, member): (String, String) = (row.get(0), row.get(1));
        tracing::warn!(role = %role, member = %member, "revoking an OS-reaching role");
        client
            .batch_execute(&format!(
                "REVOKE {} FROM {}",
                quote_ident(&role),
                quote_ident(&member)
            ))
            .await?;
    }
    Ok(())
}

/// Installs (or updates) the role-management functions in the database
/// `client` is connected to.
pub async fn install_functions(client: &Client, admin: &str) -> anyhow::Result<()> {
    let marker = format!("{FUNCTIONS_VERSION} for {admin}");
    let installed: Option<String> = client
        .query_one(
            "SELECT (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'pgfleet')",
            &[],
        )
        .await?
        .get(0);
    if installed.as_deref() == Some(marker.as_str()) {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = local; {} COMMENT ON SCHEMA pgfleet IS {}; COMMIT;",
            functions_sql(admin),
            quote_literal(&marker)
        ))
        .await
        .map_err(|e| anyhow::anyhow!("installing the role functions: {e}"))
}

/// Changes when the functions change: an older install is replaced.
const FUNCTIONS_VERSION: &str = "pgfleet role functions v1";

fn functions_sql(admin: &str) -> String {
    let admin_ident = quote_ident(admin);
    let admin_literal = quote_literal(admin);
    let owner = quote_ident(ROLE_ADMIN);
    // Every statement the functions run quotes its inputs (%I, %L); their
    // search_path is fixed so no object of the caller's can stand in.
    format!(
        r#"
CREATE SCHEMA IF NOT EXISTS pgfleet;
REVOKE ALL ON SCHEMA pgfleet FROM PUBLIC;
GRANT USAGE ON SCHEMA pgfleet TO {admin_ident}, {owner};

CREATE OR REPLACE FUNCTION pgfleet.reserved_role(role_name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT role_name LIKE 'pg\_%' OR role_name LIKE 'pgfleet%' OR role_name = {admin_literal}
     OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name
                AND (rolsuper OR rolcreaterole OR rolreplication OR rolbypassrls))
$fn$;

CREATE OR REPLACE FUNCTION pgfleet.managed_role(role_name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT NOT pgfleet.reserved_role(role_name)
     AND EXISTS (SELECT 1 FROM pg_auth_members a
                 JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
                 WHERE r.rolname = role_name AND m.rolname = {admin_literal} AND a.admin_option)
$fn$;

CREATE OR REPLACE FUNCTION pgfleet.create_role(role_name text, password text DEFAULT NULL, login boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF pgfleet.reserved_role(role_name) THEN
    RAISE EXCEPTION 'role name "%" is reserved', role_name USING ERRCODE = 'insufficient_privilege';
  END IF;
  EXECUTE format('CREATE ROLE %I %s NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                 role_name, CASE WHEN login THEN 'LOGIN' ELSE 'NOLOGIN' END);
  IF password IS NOT NULL THEN
    EXECUTE format('ALTER ROLE %I PASSWORD %L', role_name, password);
  END IF;
  EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION', role_name, {admin_literal});
END
$fn$;

CREATE OR REPLACE FUNCTION pgfleet.set_password(role_name text, password text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF NOT pgfleet.managed_role(role_name) THEN
    RAISE EXCEPTION 'role "%" is not one of yours', role_name USING ERRCODE = 'insufficient_privilege';
  END IF;
  EXECUTE format('ALTER ROLE %I PASSWORD %L', role_name, password);
END
$fn$;

CREATE OR REPLACE FUNCTION pgfleet.drop_role(role_name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF NOT pgfleet.managed_role(role_name) THEN
    RAISE EXCEPTION 'role "%" is not one of yours', role_name USING ERRCODE = 'insufficient_privilege';
  END IF;
  EXECUTE format('DROP ROLE %I', role_name);
END
$fn$;

ALTER FUNCTION pgfleet.reserved_role(text) OWNER TO {owner};
ALTER FUNCTION pgfleet.managed_role(text) OWNER TO {owner};
ALTER FUNCTION pgfleet.create_role(text, text, boolean) OWNER TO {owner};
ALTER FUNCTION pgfleet.set_password(text, text) OWNER TO {owner};
ALTER FUNCTION pgfleet.drop_role(text) OWNER TO {owner};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgfleet FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgfleet TO {admin_ident};
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_keeps_createrole_only_where_it_cannot_reach_the_os_roles() {
        assert_eq!(admin_attributes(150_018), "CREATEDB NOCREATEROLE");
        assert_eq!(admin_attributes(160_000), "CREATEDB CREATEROLE");
    }

    #[test]
    fn the_admin_name_is_quoted_everywhere() {
        let sql = functions_sql("odd\"name'x");
        assert!(sql.contains("\"odd\"\"name'x\""));
        assert!(sql.contains("'odd\"name''x'"));
        assert!(!sql.contains("TO odd"));
    }
}
