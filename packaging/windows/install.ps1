# Install (or upgrade) inspect-line on a Windows line PC from this folder, with no network.
#
#   powershell -ExecutionPolicy Bypass -File install.ps1 [-Prefix DIR] [-Data DIR]
#              [-With export,postgres] [-Autostart] [-Python "py -3.11"]
#
# Prefix: default %LOCALAPPDATA%\Programs\inspect-line. Data (settings, models, the
# inspection log, logs\app.log): default %LOCALAPPDATA%\inspect-line, never inside Prefix,
# so an upgrade or uninstall keeps it. -Autostart: the app full-screen at logon (a shortcut
# in the user's Startup folder). A Start-menu shortcut is always made.
param([string]$Prefix = "$env:LOCALAPPDATA\Programs\inspect-line", [string]$Data = "",
      [string]$With = "", [switch]$Autostart, [string]$Python = "py -3.11")
$ErrorActionPreference = "Stop"
$Here = $PSScriptRoot
$py = $Python.Split(" ")
function Run { param([string[]]$Cmd) & $Cmd[0] $Cmd[1..($Cmd.Length - 1)]; if ($LASTEXITCODE) { throw "$Cmd failed ($LASTEXITCODE)" } }

New-Item -ItemType Directory -Force $Prefix | Out-Null
$Prefix = (Resolve-Path $Prefix).Path
if ($Data) {
  New-Item -ItemType Directory -Force $Data | Out-Null
  $Data = (Resolve-Path $Data).Path
  if (($Data + "\").StartsWith($Prefix + "\", "OrdinalIgnoreCase")) { throw "the data folder must not lie inside the install folder $Prefix (an upgrade would lose it)" }
}
$reqs = @("-r", "$Here\requirements.txt")
foreach ($e in ($With -split "," | Where-Object { $_ })) {
  if (-not (Test-Path "$Here\requirements-$e.txt")) { throw "no extra '$e' in this installer (export, postgres)" }
  $reqs += @("-r", "$Here\requirements-$e.txt")
}
foreach ($p in "venv.new", "app.new") { if (Test-Path "$Prefix\$p") { Remove-Item -Recurse -Force "$Prefix\$p" } }
$t0 = Get-Date
Run ($py + @("-m", "venv", "$Prefix\venv.new"))
$env:PIP_NO_INDEX = "1"; $env:PIP_CONFIG_FILE = "NUL"
$vpy = "$Prefix\venv.new\Scripts\python.exe"
Run @($vpy, "-m", "pip", "install", "-q", "--no-index", "--find-links", "$Here\wheelhouse", "--upgrade", "pip")
Run (@($vpy, "-m", "pip", "install", "-q", "--no-index", "--find-links", "$Here\wheelhouse", "-c", "$Here\constraints.txt") + $reqs)
Copy-Item -Recurse "$Here\app" "$Prefix\app.new"
foreach ($p in "venv", "app") {
  if (Test-Path "$Prefix\$p") { Remove-Item -Recurse -Force "$Prefix\$p" }
  Rename-Item "$Prefix\$p.new" $p
}
Write-Host ("install: {0:N0} s into {1}" -f ((Get-Date) - $t0).TotalSeconds, $Prefix)

$launcher = "$Prefix\inspect-line.cmd"
$lines = @("@echo off")
if ($Data) { $lines += "if not defined INSPECT_LINE_HOME set INSPECT_LINE_HOME=$Data" }
$lines += "`"$Prefix\venv\Scripts\python.exe`" `"$Prefix\app\main.py`" %*"
Set-Content -Encoding ascii $launcher $lines
Set-Content -Encoding ascii "$Prefix\data-dir.txt" $Data
Copy-Item "$Here\uninstall.ps1" $Prefix

function Shortcut([string]$Path, [string]$Arguments) {
  $s = (New-Object -ComObject WScript.Shell).CreateShortcut($Path)
  $s.TargetPath = "$Prefix\venv\Scripts\pythonw.exe"
  $s.Arguments = "`"$Prefix\app\main.py`" $Arguments"
  $s.WorkingDirectory = "$Prefix\app"
  $s.Save()
}
# pythonw has no console; the data folder comes from the launcher's variable only, so a
# chosen -Data is set for the user instead (the shortcuts do not run the .cmd).
if ($Data) { [Environment]::SetEnvironmentVariable("INSPECT_LINE_HOME", $Data, "User") }
$menu = [Environment]::GetFolderPath("Programs")
Shortcut "$menu\Inspection.lnk" ""
Add-Content "$Prefix\installed-files.txt" "$menu\Inspection.lnk"
if ($Autostart) {
  $startup = [Environment]::GetFolderPath("Startup")
  Shortcut "$startup\Inspection.lnk" "--fullscreen"
  Add-Content "$Prefix\installed-files.txt" "$startup\Inspection.lnk"
}
Run @("$Prefix\venv\Scripts\python.exe", "$Prefix\app\main.py", "--version")
Write-Host "install: start it from the Start menu (Inspection) or $launcher; uninstall: $Prefix\uninstall.ps1 [-Purge]"
