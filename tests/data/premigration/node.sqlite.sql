-- The node store's tables exactly as cagnet made them before it had migrations
-- (metadata.create_all on sqlite), frozen: the upgrade tests start from these.

CREATE TABLE audit_log (
	seq INTEGER NOT NULL, 
	at VARCHAR(32) NOT NULL, 
	principal VARCHAR NOT NULL, 
	role VARCHAR NOT NULL, 
	via VARCHAR NOT NULL, 
	method VARCHAR NOT NULL, 
	parameters VARCHAR NOT NULL, 
	decision VARCHAR NOT NULL, 
	release_digest VARCHAR NOT NULL, 
	policy_digest VARCHAR NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	entry_hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (seq), 
	UNIQUE (prev_hash)
);

CREATE TABLE authority (
	code VARCHAR(9) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	population INTEGER NOT NULL, 
	PRIMARY KEY (code)
);

CREATE TABLE mandate_slot (
	mandate_id VARCHAR(32) NOT NULL, 
	slot INTEGER NOT NULL, 
	method VARCHAR(80) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (mandate_id, slot, method)
);

CREATE TABLE provider (
	id INTEGER NOT NULL, 
	provider_ref VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	national_provider_id VARCHAR(32), 
	charity_number VARCHAR(16), 
	company_number VARCHAR(16), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (provider_ref)
);

CREATE TABLE release_ledger (
	id INTEGER NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	query_signature TEXT NOT NULL, 
	dimensions TEXT NOT NULL, 
	cells TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_release_ledger_kind ON release_ledger (kind);

CREATE TABLE released_answer (
	id INTEGER NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	query_signature TEXT NOT NULL, 
	policy_digest VARCHAR(80) NOT NULL, 
	answer TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_released_answer_kind ON released_answer (kind);

CREATE INDEX ix_released_answer_query_signature ON released_answer (query_signature);

CREATE TABLE seen_nonce (
	nonce_digest VARCHAR(64) NOT NULL, 
	expires_at_ms BIGINT NOT NULL, 
	PRIMARY KEY (nonce_digest)
);

CREATE INDEX ix_seen_nonce_expires_at_ms ON seen_nonce (expires_at_ms);

CREATE TABLE district (
	code VARCHAR(9) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	authority_code VARCHAR(9) NOT NULL, 
	PRIMARY KEY (code), 
	FOREIGN KEY(authority_code) REFERENCES authority (code)
);

CREATE INDEX ix_district_authority_code ON district (authority_code);

CREATE TABLE service (
	id INTEGER NOT NULL, 
	service_ref VARCHAR(64) NOT NULL, 
	provider_id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	district_code VARCHAR(9) NOT NULL, 
	service_type VARCHAR(40) NOT NULL, 
	client_group INTEGER NOT NULL, 
	units INTEGER NOT NULL, 
	unit_type VARCHAR(20) NOT NULL, 
	contracted_hours FLOAT, 
	designated BOOLEAN NOT NULL, 
	term VARCHAR(5) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_service_client_group CHECK (client_group BETWEEN 1 AND 21), 
	CONSTRAINT ck_service_units CHECK (units >= 0), 
	CONSTRAINT ck_service_hours CHECK (contracted_hours IS NULL OR contracted_hours > 0), 
	CONSTRAINT ck_service_term CHECK (term IN ('short', 'long')), 
	UNIQUE (service_ref), 
	FOREIGN KEY(provider_id) REFERENCES provider (id), 
	FOREIGN KEY(district_code) REFERENCES district (code)
);

CREATE INDEX ix_service_district_code ON service (district_code);

CREATE INDEX ix_service_provider_id ON service (provider_id);

CREATE TABLE client_record (
	id INTEGER NOT NULL, 
	record_ref VARCHAR(64) NOT NULL, 
	service_id INTEGER NOT NULL, 
	start_date DATE NOT NULL, 
	client_group INTEGER NOT NULL, 
	secondary_groups VARCHAR(64) NOT NULL, 
	age_band VARCHAR(5) NOT NULL, 
	sex VARCHAR(6) NOT NULL, 
	ethnicity VARCHAR(1) NOT NULL, 
	economic_status VARCHAR(30) NOT NULL, 
	referral_source VARCHAR(30) NOT NULL, 
	accommodation_before VARCHAR(40) NOT NULL, 
	previous_authority VARCHAR(9), 
	person BLOB NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_client_record_group CHECK (client_group BETWEEN 1 AND 21), 
	UNIQUE (record_ref), 
	FOREIGN KEY(service_id) REFERENCES service (id)
);

CREATE INDEX ix_client_record_movement ON client_record (start_date, client_group, previous_authority);

CREATE INDEX ix_client_record_person ON client_record (person);

CREATE INDEX ix_client_record_service_id ON client_record (service_id);

CREATE TABLE contract (
	id INTEGER NOT NULL, 
	contract_ref VARCHAR(64) NOT NULL, 
	service_id INTEGER NOT NULL, 
	annual_value NUMERIC(12, 2) NOT NULL, 
	start_date DATE NOT NULL, 
	end_date DATE NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_contract_value CHECK (annual_value >= 0), 
	CONSTRAINT ck_contract_dates CHECK (end_date >= start_date), 
	UNIQUE (contract_ref), 
	FOREIGN KEY(service_id) REFERENCES service (id)
);

CREATE INDEX ix_contract_service_id ON contract (service_id);

CREATE TABLE outcome (
	id INTEGER NOT NULL, 
	client_record_id INTEGER NOT NULL, 
	end_date DATE NOT NULL, 
	departure VARCHAR(9) NOT NULL, 
	economic_wellbeing VARCHAR(14) NOT NULL, 
	enjoy_and_achieve VARCHAR(14) NOT NULL, 
	be_healthy VARCHAR(14) NOT NULL, 
	stay_safe VARCHAR(14) NOT NULL, 
	positive_contribution VARCHAR(14) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT ck_outcome_departure CHECK (departure IN ('planned', 'unplanned')), 
	CONSTRAINT ck_outcome_economic_wellbeing CHECK (economic_wellbeing IN ('identified', 'achieved', 'not-applicable')), 
	CONSTRAINT ck_outcome_enjoy_and_achieve CHECK (enjoy_and_achieve IN ('identified', 'achieved', 'not-applicable')), 
	CONSTRAINT ck_outcome_be_healthy CHECK (be_healthy IN ('identified', 'achieved', 'not-applicable')), 
	CONSTRAINT ck_outcome_stay_safe CHECK (stay_safe IN ('identified', 'achieved', 'not-applicable')), 
	CONSTRAINT ck_outcome_positive_contribution CHECK (positive_contribution IN ('identified', 'achieved', 'not-applicable')), 
	UNIQUE (client_record_id), 
	FOREIGN KEY(client_record_id) REFERENCES client_record (id)
);

CREATE INDEX ix_outcome_end_date ON outcome (end_date);
