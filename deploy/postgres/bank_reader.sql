-- Least privilege for the transactions connector on the core-banking replica: it may read the
-- bank's tables and nothing else, and its sessions are read-only even if a grant is added later
-- by mistake. Run once per replica as its owner:
--   psql "$BANK_ADMIN_DSN" -v bank_schema=public -v reader_role=aios_bank_reader \
--        -v connector_role=aios_bank_connector -f deploy/postgres/bank_reader.sql
-- then give the connector  AIOS_BANK_DSN=postgresql://aios_bank_connector:<secret>@host/db
-- (the password is set by whoever manages the replica's secrets, never in this file).
-- tests/integration/test_least_privilege.py applies this file to the local PostgreSQL.

CREATE ROLE :"reader_role" NOLOGIN;
GRANT USAGE ON SCHEMA :"bank_schema" TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA :"bank_schema" TO :"reader_role";
-- Tables the bank adds later are readable too, and only readable.
ALTER DEFAULT PRIVILEGES IN SCHEMA :"bank_schema" GRANT SELECT ON TABLES TO :"reader_role";

CREATE ROLE :"connector_role" LOGIN IN ROLE :"reader_role";
ALTER ROLE :"connector_role" SET default_transaction_read_only = on;
-- No temporary tables, no objects of its own anywhere in the database.
REVOKE TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE CREATE ON SCHEMA :"bank_schema" FROM PUBLIC;
