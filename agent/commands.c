/*
 * commands.c - the command table: one line per command, one file each
 * (agent/cmd_*.c), as tmux's cmd_table[] does.
 */
#include "agent/cli.h"

extern const struct cmd_entry cmd_init_entry, cmd_keygen_entry, cmd_agent_entry, cmd_status_entry,
    cmd_scan_entry, cmd_ship_entry, cmd_restore_file_entry, cmd_catalog_ls_entry,
    cmd_catalog_history_entry, cmd_catalog_stats_entry, cmd_audit_log_entry, cmd_audit_verify_entry,
    cmd_config_reference_entry, cmd_doctor_entry, cmd_daily_entry, cmd_restore_db_entry,
    cmd_restore_point_entry, cmd_verify_entry, cmd_catalog_migrate_entry, cmd_help_entry,
    cmd_snapshot_list_entry, cmd_snapshot_entry, cmd_restore_snapshot_entry, cmd_prune_entry,
    cmd_hold_add_entry, cmd_hold_release_entry, cmd_hold_list_entry;

const struct cmd_entry *const cmd_table[] = {
    &cmd_init_entry,
    &cmd_keygen_entry,
    &cmd_agent_entry,
    &cmd_status_entry,
    &cmd_scan_entry,
    &cmd_ship_entry,
    &cmd_restore_file_entry,
    &cmd_catalog_ls_entry,
    &cmd_catalog_history_entry,
    &cmd_catalog_stats_entry,
    &cmd_catalog_migrate_entry,
    &cmd_audit_log_entry,
    &cmd_audit_verify_entry,
    &cmd_config_reference_entry,
    &cmd_doctor_entry,
    &cmd_daily_entry,
    &cmd_restore_db_entry,
    &cmd_restore_point_entry,
    &cmd_verify_entry,
    &cmd_snapshot_list_entry, /* before `snapshot LABEL`: the first match wins */
    &cmd_snapshot_entry,
    &cmd_restore_snapshot_entry,
    &cmd_prune_entry,
    &cmd_hold_add_entry,
    &cmd_hold_release_entry,
    &cmd_hold_list_entry,
    &cmd_help_entry,
    NULL,
};
