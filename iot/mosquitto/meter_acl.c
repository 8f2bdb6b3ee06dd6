/*
 * The meter IoT policy as a mosquitto 2.0 plugin: the local broker's access checks.
 *
 * Why a plugin and not mosquitto's acl_file: with an acl_file, mosquitto 2.0
 * grants every SUBSCRIBE and only filters what it delivers, so a client cannot
 * tell a refused subscription from an accepted one. AWS IoT Core answers a
 * subscription its policy does not allow with a SUBACK failure (0x80 on MQTT
 * 3.1.1, 0x87 "not authorised" on MQTT 5); so does mosquitto when a plugin
 * denies the SUBSCRIBE. iot/broker.py compiles this file and loads it.
 *
 * The rules (the username is the client certificate's CN: use_identity_as_username):
 *   - a meter may publish to its own readings topic only (meter_topic, with %u
 *     standing for its username) and may neither subscribe nor read;
 *   - the rules bridge (bridge_identity) may subscribe to and read the readings
 *     of every meter (bridge_filter) and may publish nothing;
 *   - unsubscribing is always allowed: it grants nothing.
 * Every decision is final (never deferred): no other access check is configured.
 *
 * Options (plugin_opt_<name> in mosquitto.conf): meter_topic, bridge_identity,
 * bridge_filter. All three are required.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

struct policy {
	char *meter_prefix; /* meter_topic before %u */
	char *meter_suffix; /* meter_topic after %u */
	char *bridge_identity;
	char *bridge_filter;
};

static mosquitto_plugin_id_t *plugin_id;
static struct policy policy;

static int is_own_readings_topic(const char *username, const char *topic)
{
	size_t prefix = strlen(policy.meter_prefix);
	size_t name = strlen(username);
	size_t suffix = strlen(policy.meter_suffix);
	/* A name with a level separator or a wildcard could reach another topic. */
	if(name == 0 || strpbrk(username, "/+#") != NULL){
		return 0;
	}
	return strlen(topic) == prefix + name + suffix
		&& strncmp(topic, policy.meter_prefix, prefix) == 0
		&& strncmp(topic + prefix, username, name) == 0
		&& strcmp(topic + prefix + name, policy.meter_suffix) == 0;
}

static int bridge_may(int access, const char *topic)
{
	bool matches = false;
	switch(access){
		case MOSQ_ACL_SUBSCRIBE:
			/* The filter asked for, exactly: a wider one (#) would read more. */
			return strcmp(topic, policy.bridge_filter) == 0;
		case MOSQ_ACL_READ:
			return mosquitto_topic_matches_sub(policy.bridge_filter, topic, &matches) == MOSQ_ERR_SUCCESS
				&& matches;
		default:
			return 0;
	}
}

static int check_access(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *check = event_data;
	const char *username = mosquitto_client_username(check->client);
	(void)event;
	(void)userdata;

	if(check->access == MOSQ_ACL_UNSUBSCRIBE){
		return MOSQ_ERR_SUCCESS;
	}
	if(username == NULL || check->topic == NULL){
		return MOSQ_ERR_ACL_DENIED;
	}
	if(strcmp(username, policy.bridge_identity) == 0){
		return bridge_may(check->access, check->topic) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if(check->access == MOSQ_ACL_WRITE && is_own_readings_topic(username, check->topic)){
		return MOSQ_ERR_SUCCESS;
	}
	return MOSQ_ERR_ACL_DENIED;
}

static const char *option(struct mosquitto_opt *options, int count, const char *key)
{
	for(int i = 0; i < count; i++){
		if(strcmp(options[i].key, key) == 0){
			return options[i].value;
		}
	}
	return NULL;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	const char *meter_topic = option(options, option_count, "meter_topic");
	const char *bridge_identity = option(options, option_count, "bridge_identity");
	const char *bridge_filter = option(options, option_count, "bridge_filter");
	const char *marker;
	(void)userdata;

	if(meter_topic == NULL || bridge_identity == NULL || bridge_filter == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR,
				"meter_acl: plugin_opt_meter_topic, plugin_opt_bridge_identity and plugin_opt_bridge_filter are required");
		return MOSQ_ERR_INVAL;
	}
	marker = strstr(meter_topic, "%u");
	if(marker == NULL || strstr(marker + 2, "%u") != NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, "meter_acl: meter_topic must hold %%u exactly once");
		return MOSQ_ERR_INVAL;
	}
	policy.meter_prefix = strndup(meter_topic, (size_t)(marker - meter_topic));
	policy.meter_suffix = strdup(marker + 2);
	policy.bridge_identity = strdup(bridge_identity);
	policy.bridge_filter = strdup(bridge_filter);
	if(!policy.meter_prefix || !policy.meter_suffix || !policy.bridge_identity || !policy.bridge_filter){
		return MOSQ_ERR_NOMEM;
	}
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, check_access, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, check_access, NULL);
	free(policy.meter_prefix);
	free(policy.meter_suffix);
	free(policy.bridge_identity);
	free(policy.bridge_filter);
	return MOSQ_ERR_SUCCESS;
}
