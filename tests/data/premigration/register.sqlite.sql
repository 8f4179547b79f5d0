-- The register store's tables exactly as cagnet made them before it had migrations
-- (metadata.create_all on sqlite), frozen: the upgrade tests start from these.

CREATE TABLE register_checkpoint (
	tree_size BIGINT NOT NULL, 
	root BLOB NOT NULL, 
	time_ms BIGINT NOT NULL, 
	payload BLOB NOT NULL, 
	keyid VARCHAR(64) NOT NULL, 
	signature BLOB NOT NULL, 
	PRIMARY KEY (tree_size)
);

CREATE TABLE register_cosignature (
	tree_size BIGINT NOT NULL, 
	witness VARCHAR(32) NOT NULL, 
	keyid VARCHAR(64) NOT NULL, 
	signature BLOB NOT NULL, 
	at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (tree_size, witness)
);

CREATE TABLE register_leaf (
	leaf_index BIGINT NOT NULL, 
	entry BLOB NOT NULL, 
	entry_digest VARCHAR(64) NOT NULL, 
	authority VARCHAR(32) NOT NULL, 
	provider_key VARCHAR(250) NOT NULL, 
	decision VARCHAR(16) NOT NULL, 
	appended_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (leaf_index), 
	UNIQUE (entry_digest)
);

CREATE INDEX ix_register_leaf_authority ON register_leaf (authority);

CREATE INDEX ix_register_leaf_provider_key ON register_leaf (provider_key);

CREATE TABLE register_node (
	node_id BIGINT NOT NULL, 
	hash BLOB NOT NULL, 
	PRIMARY KEY (node_id)
);

CREATE TABLE register_provider_index (
	"key" VARCHAR(250) NOT NULL, 
	leaf_index BIGINT NOT NULL, 
	PRIMARY KEY ("key", leaf_index)
);

CREATE TABLE register_tree (
	id INTEGER NOT NULL, 
	size BIGINT NOT NULL, 
	root BLOB NOT NULL, 
	frontier BLOB NOT NULL, 
	PRIMARY KEY (id)
);
