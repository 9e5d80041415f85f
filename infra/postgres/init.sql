-- Runs once, when the PostgreSQL container starts on an empty data volume
-- (/docker-entrypoint-initdb.d), as the POSTGRES_USER superuser, which then owns every database.
-- Each service owns its database (DESIGN §8); crm migrate creates the tables inside them.
CREATE DATABASE crm_contacts;
CREATE DATABASE crm_leads;
CREATE DATABASE crm_loyalty;
CREATE DATABASE crm_partners;
CREATE DATABASE crm_gateway;
