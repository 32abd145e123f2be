-- Indexes on the foreign key columns the design document left without one (its checklist: all FK columns indexed)
--
-- created_by_id and updated_by_id reference users(id) ON DELETE SET NULL. Without an index, deleting one user
-- scans every agent, skill, MCP server and task for rows to update, holding locks all the while. The indexes
-- are partial (IS NOT NULL): the app's SQLite file has no users, so migrated rows hold NULL there and cost
-- nothing. The lookups that ON DELETE SET NULL makes (col = $1) imply NOT NULL, so they can use these indexes.
-- Each CREATE INDEX blocks writes to its table while it builds: on a large, live tasks table, apply this in a
-- quiet moment. Runs inside one transaction, as the owner role, with search_path = public. Never edit it once
-- applied.

CREATE INDEX idx_agents_created_by_id ON agents(created_by_id) WHERE created_by_id IS NOT NULL;
CREATE INDEX idx_agents_updated_by_id ON agents(updated_by_id) WHERE updated_by_id IS NOT NULL;
CREATE INDEX idx_skills_created_by_id ON skills(created_by_id) WHERE created_by_id IS NOT NULL;
CREATE INDEX idx_skills_updated_by_id ON skills(updated_by_id) WHERE updated_by_id IS NOT NULL;
CREATE INDEX idx_mcp_servers_created_by_id ON mcp_servers(created_by_id) WHERE created_by_id IS NOT NULL;
CREATE INDEX idx_mcp_servers_updated_by_id ON mcp_servers(updated_by_id) WHERE updated_by_id IS NOT NULL;
CREATE INDEX idx_tasks_created_by_id ON tasks(created_by_id) WHERE created_by_id IS NOT NULL;
