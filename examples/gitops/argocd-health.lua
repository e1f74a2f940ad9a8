-- Argo CD health check for the tenancy.dev kinds: Customer, Project and ProjectMembership.
--
-- Install it for each kind in argocd-cm (see argocd-cm.yaml beside this file):
--   resource.customizations.health.tenancy.dev_Customer
--   resource.customizations.health.tenancy.dev_Project
--   resource.customizations.health.tenancy.dev_ProjectMembership
--
-- It reads the conditions the operator writes exactly as kstatus (sigs.k8s.io/cli-utils, what
-- Flux's health checks call) reads them, in the same order, with no list of reasons of its own:
--   * being deleted: Progressing (kstatus: Terminating);
--   * status.observedGeneration behind metadata.generation: Progressing (InProgress);
--   * Reconciling=True: Progressing, with its message (InProgress);
--   * Stalled=True: Degraded, with its message (Failed): what no waiting fixes, e.g. a project
--     named like a namespace it does not own, a customer or project that does not exist, a
--     duplicate membership, an oversubscribed customer quota;
--   * Ready=False: Progressing (InProgress); Ready=True: Healthy (Current), which includes the
--     end states a spec asks for (an expired or revoked membership, a finished or expired
--     project);
--   * no conditions: Healthy (Current).
-- One difference: an object the operator has not written a status for yet is Progressing here,
-- while kstatus calls it Current (it cannot tell it from a kind without status).
-- Written for Argo CD's Lua 5.1 (gopher-lua): only base and string functions.
local hs = {}

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.type .. " is " .. tostring(c.status) .. " (" .. tostring(c.reason) .. ")"
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to write a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the tenancy operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions or {}
for _, c in ipairs(conditions) do
  if c.type == "Reconciling" and c.status == "True" then
    hs.status = "Progressing"
    hs.message = text(c)
    return hs
  end
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = text(c)
    return hs
  end
end

for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    if c.status == "True" then
      hs.status = "Healthy"
    else
      hs.status = "Progressing"
    end
    hs.message = text(c)
    return hs
  end
end

hs.status = "Healthy"
hs.message = "No conditions to wait for"
return hs
