-- Full-text search: search_vector columns on agents and skills, their GIN indexes and the triggers that fill them
-- Runs inside one transaction, as the owner role, with search_path = public. Never edit it once applied.

ALTER TABLE agents ADD COLUMN search_vector tsvector;
ALTER TABLE skills ADD COLUMN search_vector tsvector;

CREATE INDEX idx_agents_search_gin ON agents USING GIN (search_vector);
CREATE INDEX idx_skills_search_gin ON skills USING GIN (search_vector);

CREATE FUNCTION agents_search_vector_update() RETURNS trigger AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', COALESCE(NEW.name, '')), 'A') ||
        setweight(to_tsvector('english', COALESCE(NEW.description, '')), 'B') ||
        setweight(to_tsvector('english', COALESCE(NEW.system_prompt, '')), 'C');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tsvector_update_agents
    BEFORE INSERT OR UPDATE ON agents
    FOR EACH ROW
    EXECUTE FUNCTION agents_search_vector_update();

CREATE FUNCTION skills_search_vector_update() RETURNS trigger AS $$
BEGIN
    NEW.search_vector :=
        setweight(to_tsvector('english', COALESCE(NEW.name, '')), 'A') ||
        setweight(to_tsvector('english', COALESCE(NEW.description, '')), 'B') ||
        setweight(to_tsvector('english', COALESCE(NEW.content, '')), 'C');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER tsvector_update_skills
    BEFORE INSERT OR UPDATE ON skills
    FOR EACH ROW
    EXECUTE FUNCTION skills_search_vector_update();

