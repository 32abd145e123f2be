-- B-tree, GIN (JSONB), partial and composite indexes of the design document
--
-- idx_agents_name, idx_skills_name and idx_mcp_servers_name repeat the indexes behind the UNIQUE constraints; they
-- are kept because the design document names them, and cost little on tables of this size.
-- Runs inside one transaction, as the owner role, with search_path = public. Never edit it once applied.

-- ============================================
-- B-TREE
-- ============================================
CREATE INDEX idx_agents_name ON agents(name);
CREATE INDEX idx_agents_enabled ON agents(enabled) WHERE enabled = true;
CREATE INDEX idx_agents_model ON agents(model);
CREATE INDEX idx_agents_created_at ON agents(created_at DESC);
CREATE INDEX idx_agents_updated_at ON agents(updated_at DESC);

CREATE INDEX idx_skills_name ON skills(name);
CREATE INDEX idx_skills_experience_score ON skills(experience_score DESC);
CREATE INDEX idx_skills_created_at ON skills(created_at DESC);

CREATE INDEX idx_mcp_servers_name ON mcp_servers(name);
CREATE INDEX idx_mcp_servers_disabled ON mcp_servers(disabled) WHERE disabled = false;
CREATE INDEX idx_mcp_servers_transport ON mcp_servers(transport);

CREATE INDEX idx_tasks_agent_id ON tasks(agent_id);
CREATE INDEX idx_tasks_status ON tasks(status);
CREATE INDEX idx_tasks_created_at ON tasks(created_at DESC);
CREATE INDEX idx_tasks_completed_at ON tasks(completed_at DESC) WHERE completed_at IS NOT NULL;

CREATE INDEX idx_agents_skills_agent_id ON agents_skills_links(agent_id);
CREATE INDEX idx_agents_skills_skill_id ON agents_skills_links(skill_id);
CREATE INDEX idx_agents_mcps_agent_id ON agents_mcp_servers_links(agent_id);
CREATE INDEX idx_agents_mcps_mcp_id ON agents_mcp_servers_links(mcp_server_id);

-- ============================================
-- GIN (JSONB containment and existence)
-- ============================================
CREATE INDEX idx_agents_tools_gin ON agents USING GIN (tools);
CREATE INDEX idx_agents_disallowed_tools_gin ON agents USING GIN (disallowed_tools);
CREATE INDEX idx_skills_allowed_tools_gin ON skills USING GIN (allowed_tools);
CREATE INDEX idx_mcp_servers_args_gin ON mcp_servers USING GIN (args);
CREATE INDEX idx_mcp_servers_env_gin ON mcp_servers USING GIN (env);
CREATE INDEX idx_tasks_result_gin ON tasks USING GIN (result);

-- ============================================
-- PARTIAL
-- ============================================
CREATE INDEX idx_agents_enabled_name ON agents(name) WHERE enabled = true;
CREATE INDEX idx_mcp_servers_active ON mcp_servers(name) WHERE disabled = false;
CREATE INDEX idx_tasks_completed ON tasks(completed_at DESC)
    WHERE status = 'completed' AND completed_at IS NOT NULL;
CREATE INDEX idx_tasks_failed ON tasks(created_at DESC)
    WHERE status = 'failed';

-- ============================================
-- COMPOSITE
-- ============================================
CREATE INDEX idx_agents_enabled_model ON agents(enabled, model)
    WHERE enabled = true;
CREATE INDEX idx_tasks_agent_status_created ON tasks(agent_id, status, created_at DESC);
CREATE INDEX idx_agents_skills_composite ON agents_skills_links(agent_id, skill_order);
CREATE INDEX idx_agents_mcps_composite ON agents_mcp_servers_links(agent_id, mcp_server_order);
