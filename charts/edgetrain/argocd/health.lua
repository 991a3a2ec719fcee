-- Argo CD health check for EdgeComputeTarget, TrainingRun and ModelRelease (edgetrain.dev).
-- Reads the kstatus conditions the operator writes; a Ready condition computed for an older
-- generation never counts as Healthy.
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local byType = {}
for _, c in ipairs(obj.status.conditions) do
  byType[c.type] = c
end
local function current(c)
  return c ~= nil and (c.observedGeneration == nil or generation == nil or c.observedGeneration == generation)
end
local stalled, ready = byType["Stalled"], byType["Ready"]
if obj.kind == "TrainingRun" and (obj.status.phase == "Failed" or obj.status.phase == "Canceled") then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or ("TrainingRun " .. obj.status.phase)
  return hs
end
if obj.kind == "TrainingRun" and obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "TrainingRun is suspended"
  return hs
end
if current(stalled) and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
if current(ready) and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if ready ~= nil then
  hs.message = ready.reason .. ": " .. ready.message
end
return hs
