-- Least privilege in the warehouse database: only the pipeline writes it; readers (analysts,
-- the MLflow and Evidently UIs, a BI tool) read the features and the loaded lake, nothing more.
-- Run once as the database's owner, before the first pipeline run:
--   psql "$WAREHOUSE_ADMIN_DSN" -v pipeline_role=aios_pipeline \
--        -v reader_role=aios_warehouse_reader -f deploy/postgres/warehouse_roles.sql
-- then run the pipeline with AIOS_PG_USER=aios_pipeline (its password from the secret store,
-- never in this file) and give readers LOGIN roles IN ROLE aios_warehouse_reader.
-- tests/integration/test_least_privilege.py applies this file to the local PostgreSQL.

CREATE ROLE :"pipeline_role" LOGIN;
CREATE ROLE :"reader_role" NOLOGIN;
-- Nobody else creates anything here: not in public, not temporary tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;
-- The pipeline owns the two schemas it writes: `lake` (lib/lake_load.py) and `features` (dbt).
CREATE SCHEMA lake AUTHORIZATION :"pipeline_role";
CREATE SCHEMA features AUTHORIZATION :"pipeline_role";
GRANT TEMPORARY ON DATABASE :"DBNAME" TO :"pipeline_role";  -- dbt stages incremental merges
GRANT USAGE ON SCHEMA lake, features TO :"reader_role";
-- Every table the pipeline creates there, now or later (dbt rebuilds tables), is readable.
ALTER DEFAULT PRIVILEGES FOR ROLE :"pipeline_role" IN SCHEMA lake, features
    GRANT SELECT ON TABLES TO :"reader_role";
