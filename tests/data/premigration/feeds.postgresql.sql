-- The feeds store's tables exactly as cagnet made them before it had migrations
-- (metadata.create_all on postgresql), frozen: the upgrade tests start from these.

CREATE TABLE feed_snapshot (
	sequence INTEGER NOT NULL, 
	published_at VARCHAR(40) NOT NULL, 
	envelope TEXT NOT NULL, 
	bundles TEXT NOT NULL, 
	PRIMARY KEY (sequence)
);
