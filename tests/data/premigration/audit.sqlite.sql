-- The audit store's tables exactly as cagnet made them before it had migrations
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
