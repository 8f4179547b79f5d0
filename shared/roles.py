"""The roles a party holds in the network manifest (signed strings: they never change). Apart from
`shared.manifest` so the command line can name them in its help without loading pydantic."""

MEMBER_AUTHORITY = "member-authority"
CAG_CHAIR = "cag-chair"
REGIONAL_BOARD = "regional-board"
COORDINATOR = "coordinator"
ROLES = (MEMBER_AUTHORITY, CAG_CHAIR, REGIONAL_BOARD, COORDINATOR)
