-- Argo CD health check for smtp-connector's SmtpDomain and SupportAddress
-- (both report kstatus-style conditions). Install it for both kinds, see
-- gitops/argocd/README.md. Tested with gopher-lua, the VM Argo CD embeds.
local hs = {}

local function condition(type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Disconnecting: credentials are revoked, then the relay is removed"
  return hs
end

if obj.status == nil or obj.status.observedGeneration == nil or (obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

local reconciling = condition("Reconciling")
if ready == nil or (reconciling ~= nil and reconciling.status == "True") then
  hs.status = "Progressing"
  hs.message = ready ~= nil and (ready.reason .. ": " .. ready.message) or "Waiting for the operator"
  return hs
end

-- Ready is False and nothing is in progress: a failure that needs a change (a verification
-- failure, a missing Secret, an expired certificate). The reason says which.
hs.status = "Degraded"
hs.message = ready.reason .. ": " .. ready.message
return hs
