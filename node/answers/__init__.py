"""What a node answers: each aggregate kind's raw figures as plain functions of the store."""
