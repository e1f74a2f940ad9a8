-- Argo CD health check for the tenancy.dev kinds: Customer, Project and ProjectMembership.
--
-- Install it for each kind in argocd-cm (see argocd-cm.yaml beside this file):
--   resource.customizations.health.tenancy.dev_Customer
--   resource.customizations.health.tenancy.dev_Project
--   resource.customizations.health.tenancy.dev_ProjectMembership
--
-- kstatus rules, as Flux and `kubectl wait --for=condition=Ready` read the same status:
--   * no status yet, or status.observedGeneration behind metadata.generation: Progressing
--     (the operator has not looked at the current spec yet);
--   * Stalled=True, NamespaceConflict=True, or any condition that is False for a reason no
--     amount of waiting fixes (a project named like a namespace it does not own, a customer or
--     project that does not exist, a duplicate membership, an oversubscribed customer quota):
--     Degraded, with that condition's message;
--   * Ready=True: Healthy;
--   * a membership that ended as its spec or its project says (Expired, Revoked): Healthy;
--   * anything else, e.g. a namespace being created, a quota not enforced yet, an invitation
--     waiting to be accepted: Progressing, with the Ready condition's message.
-- Written for Argo CD's Lua 5.1 (gopher-lua): only base and string functions.
local hs = {}

local degraded_reasons = {
  NamespaceConflict = true, -- Project: Ready=False, a namespace of its name is not its own
  CustomerNotFound = true,  -- Project: spec.customer names no Customer
  ProjectNotFound = true,   -- ProjectMembership: its namespace is no active project's
  Duplicate = true,         -- ProjectMembership: another one grants the same subject and role
  Oversubscribed = true,    -- Customer: its projects are allocated beyond its quota
}

local ended_reasons = {
  Expired = true, -- ProjectMembership: spec.expirationTime has passed
  Revoked = true, -- ProjectMembership: its project was deleted or moved without its permissions
}

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.type .. " is " .. tostring(c.status) .. " (" .. tostring(c.reason) .. ")"
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to write a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions or {}
local ready = nil
for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    ready = c
  end
  local stuck = (c.type == "Stalled" or c.type == "NamespaceConflict") and c.status == "True"
  if stuck or (c.status == "False" and degraded_reasons[c.reason]) then
    hs.status = "Degraded"
    hs.message = text(c)
    return hs
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" or (ready.status == "False" and ended_reasons[ready.reason]) then
  hs.status = "Healthy"
  hs.message = text(ready)
  return hs
end
hs.status = "Progressing"
hs.message = text(ready)
return hs
