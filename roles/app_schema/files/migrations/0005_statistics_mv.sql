-- agent_statistics materialized view, with the unique index that REFRESH ... CONCURRENTLY requires
--
-- The design document creates only idx_agent_stats_name, and REFRESH MATERIALIZED VIEW CONCURRENTLY then fails
-- ("cannot refresh materialized view concurrently ... Create a unique index with no WHERE clause"): one row per
-- agent, so (id) is unique. Refresh it as the owner role (or a superuser): only the owner may refresh it.
-- Runs inside one transaction, as the owner role, with search_path = public. Never edit it once applied.

CREATE MATERIALIZED VIEW agent_statistics AS
SELECT
  a.id,
  a.name,
  COUNT(DISTINCT asl.skill_id) as skill_count,
  COUNT(DISTINCT amsl.mcp_server_id) as mcp_count,
  COUNT(DISTINCT t.id) as task_count,
  AVG(t.duration_ms) as avg_task_duration
FROM agents a
LEFT JOIN agents_skills_links asl ON a.id = asl.agent_id
LEFT JOIN agents_mcp_servers_links amsl ON a.id = amsl.agent_id
LEFT JOIN tasks t ON a.id = t.agent_id AND t.status = 'completed'
GROUP BY a.id, a.name;

CREATE UNIQUE INDEX idx_agent_stats_id ON agent_statistics(id);
CREATE INDEX idx_agent_stats_name ON agent_statistics(name);

COMMENT ON MATERIALIZED VIEW agent_statistics IS
    'Per-agent counts of skills, MCP servers and completed tasks; REFRESH MATERIALIZED VIEW CONCURRENTLY agent_statistics';
