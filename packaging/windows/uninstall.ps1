# Remove inspect-line: the install folder and its shortcuts. The data folder (settings,
# models, the inspection log) stays unless -Purge is given.
param([switch]$Purge)
$ErrorActionPreference = "Stop"
$Prefix = $PSScriptRoot
if (-not (Test-Path "$Prefix\venv") -or -not (Test-Path "$Prefix\app\main.py")) { throw "$Prefix is not an inspect-line install folder" }
$Data = (Get-Content "$Prefix\data-dir.txt" -ErrorAction SilentlyContinue) -join ""
if (-not $Data) { $Data = if ($env:INSPECT_LINE_HOME) { $env:INSPECT_LINE_HOME } else { "$env:LOCALAPPDATA\inspect-line" } }
foreach ($f in (Get-Content "$Prefix\installed-files.txt" -ErrorAction SilentlyContinue)) {
  if ($f -and (Test-Path $f)) { Remove-Item -Force $f; Write-Host "uninstall: removed $f" }
}
if ($Purge -and (Test-Path $Data)) {
  Remove-Item -Recurse -Force $Data; Write-Host "uninstall: removed the data folder $Data"
  [Environment]::SetEnvironmentVariable("INSPECT_LINE_HOME", $null, "User")
} else { Write-Host "uninstall: data kept in $Data (-Purge removes it)" }
Set-Location $env:TEMP
Remove-Item -Recurse -Force $Prefix
Write-Host "uninstall: removed $Prefix"
